"""One local Ray session for all integration tests (ray.init costs seconds; share it)."""

from __future__ import annotations

import contextlib
import os

import pytest
import ray

from app.cluster.actors import ACTOR_NAMESPACE
from app.cluster.connection import SERVE_PROXY_ENV, WORKER_ENV


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    if not ray.is_initialized():
        os.environ.update(SERVE_PROXY_ENV["haproxy"])  # the documented default proxy
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            logging_level="WARNING",
            runtime_env={"env_vars": {**WORKER_ENV, **SERVE_PROXY_ENV["haproxy"]}},  # as `connect` starts one
        )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def stop_detached_actors(ray_session):
    """The monitors and controllers a module's services started outlive them (detached, named
    by storage root): each holds a process and runs its loop until Ray shuts down, so they
    are stopped with the module that started them."""
    before = _our_actors()
    yield
    for name in _our_actors() - before:
        with contextlib.suppress(ValueError):  # gone already
            ray.kill(ray.get_actor(name, namespace=ACTOR_NAMESPACE), no_restart=True)


def _our_actors() -> set[str]:
    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == ACTOR_NAMESPACE
    }
