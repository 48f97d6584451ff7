"""TrafficShipper: gets prediction records from a replica to the monitor, off the request path.

Requests only append to a bounded buffer; a background pump sends batches fire-and-forget,
with a few calls in flight at most. When the monitor is slow or down, the buffer fills and
new records are dropped and counted (the count travels with the next batch and is exported),
never blocking a request and never silently.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import ray

log = logging.getLogger(__name__)


class TrafficShipper:
    def __init__(
        self,
        send: Callable[[list[dict], int], ray.ObjectRef],
        *,
        capacity: int = 100_000,
        batch_size: int = 2_000,
        max_in_flight: int = 4,
    ):
        self.send = send
        self.buffer: deque[dict] = deque()
        self.capacity = capacity
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.in_flight: list[tuple[ray.ObjectRef, int]] = []
        self.dropped = 0  # not yet reported to the monitor
        self.dropped_total = 0

    def add(self, record: dict) -> None:
        if len(self.buffer) >= self.capacity:
            self._drop(1)
        else:
            self.buffer.append(record)

    def _drop(self, n: int) -> None:
        self.dropped += n
        self.dropped_total += n

    def _reap(self) -> None:
        """Forget finished sends; a failed one's records count as dropped."""
        if not self.in_flight:
            return
        refs = [r for r, _ in self.in_flight]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done_set = set(done)
        still = []
        for ref, n in self.in_flight:
            if ref not in done_set:
                still.append((ref, n))
                continue
            try:
                ray.get(ref, timeout=0)
            except Exception as exc:  # the monitor died or restarted mid-call
                log.warning("monitor lost %d records: %s", n, str(exc).splitlines()[0])
                self._drop(n)
        self.in_flight = still

    def pump(self) -> int:
        """Send what is buffered, as far as the in-flight limit allows; returns records sent."""
        self._reap()
        sent = 0
        while self.buffer and len(self.in_flight) < self.max_in_flight:
            batch = [self.buffer.popleft() for _ in range(min(self.batch_size, len(self.buffer)))]
            try:
                ref = self.send(batch, self.dropped)
            except Exception as exc:
                log.warning("cannot reach the monitor: %s", exc)
                self._drop(len(batch))
                break
            self.dropped = 0
            self.in_flight.append((ref, len(batch)))
            sent += len(batch)
        return sent
