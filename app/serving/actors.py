"""The cluster actors a serving replica talks to: the serve-control actor and the drift monitor.

Monitor calls carry a timeout: a monitor that is restarting or overloaded turns into a 503
the client may retry, never into a request that hangs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from app.config import AppConfig


class MonitorUnavailable(RuntimeError):
    """The monitor did not answer in time (it may be restarting); the client may retry."""


# A monitor call answers in milliseconds; one that takes this long is restarting or
# overloaded, and a client waits no longer than this for feedback or a report.
MONITOR_TIMEOUT_S = 15.0


async def within(ref):
    """The monitor's answer, or MonitorUnavailable when it is slow or restarting (Ray fails a
    call to a restarting actor at once, with ActorUnavailableError)."""
    from ray.exceptions import ActorUnavailableError

    timeout_s = MONITOR_TIMEOUT_S
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except asyncio.TimeoutError:
        raise MonitorUnavailable(f"the drift monitor did not answer within {timeout_s:g} s; retry") from None
    except ActorUnavailableError:
        raise MonitorUnavailable("the drift monitor is restarting; retry") from None


def control_actor(cfg: AppConfig):
    from app.serving.control import get_control

    return get_control(cfg)


def monitor_actor(cfg: AppConfig):
    from app.monitoring.monitor import get_monitor

    return get_monitor(cfg)


def resolve(ref):
    """The value of an actor call made in the constructor: a Ray ObjectRef, or a resolved
    `concurrent.futures.Future` from an in-process double of the actor."""
    if isinstance(ref, concurrent.futures.Future):
        return ref.result()
    import ray

    return ray.get(ref)
