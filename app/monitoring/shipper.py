"""TrafficShipper: gets prediction records from a replica to the monitor, off the request path.

Requests only append to a bounded buffer; a background pump sends batches fire-and-forget,
with a few calls in flight at most. A batch stays with the shipper until the monitor has
answered for it: when the call fails because the monitor died or is restarting, its records
(and the drop count it carried) go back to the front of the buffer and are sent again once the
monitor is back (after `retry_after_s`); the monitor recognises a record it had already
accepted by its request id. A call the monitor answered with an error is not retried (a record
it cannot take would fail forever): its records are dropped and counted. When the buffer is
full, new records are dropped and counted (the count travels with the next batch and is
exported), never blocking a request and never silently.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import ray
from ray.exceptions import RayActorError

from app.errors import first_line

log = logging.getLogger(__name__)


@dataclass
class _Sent:
    answer: concurrent.futures.Future  # the monitor's answer to the call
    records: list[dict]
    dropped: int  # the drop count this call carried


class TrafficShipper:
    def __init__(
        self,
        send: Callable[[list[dict], int], ray.ObjectRef | concurrent.futures.Future],
        *,
        capacity: int = 100_000,
        batch_size: int = 2_000,
        max_in_flight: int = 4,
        retry_after_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.send = send
        self.buffer: deque[dict] = deque()
        self.capacity = capacity
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.clock = clock
        self.in_flight: list[_Sent] = []
        self.dropped = 0  # not yet reported to the monitor
        self.dropped_total = 0
        self.resend_at = 0.0

    def add(self, record: dict) -> None:
        if len(self.buffer) >= self.capacity:
            self._drop(1)
        else:
            self.buffer.append(record)

    def _drop(self, n: int) -> None:
        self.dropped += n
        self.dropped_total += n

    def _take_back(self, records: list[dict], dropped: int) -> None:
        """Records of a call that did not arrive: to the front of the buffer, as far as it has
        room (the rest dropped and counted), with the drop count they carried."""
        self.dropped += dropped
        room = max(self.capacity - len(self.buffer), 0)
        self.buffer.extendleft(reversed(records[:room]))
        self._drop(len(records) - min(room, len(records)))
        self.resend_at = self.clock() + self.retry_after_s

    def _reap(self) -> None:
        """Forget answered calls; take back the records of calls that did not arrive."""
        still = []
        for sent in self.in_flight:
            if not sent.answer.done():
                still.append(sent)
                continue
            try:
                sent.answer.result()
            except RayActorError as exc:  # the monitor died or is restarting: send again later
                log.warning(
                    "monitor unavailable, resending %d records: %s", len(sent.records), first_line(exc)
                )
                self._take_back(sent.records, sent.dropped)
            except Exception as exc:  # the monitor answered with an error: not retried
                log.warning("monitor refused %d records: %s", len(sent.records), first_line(exc))
                self.dropped += sent.dropped
                self._drop(len(sent.records))
        self.in_flight = still

    def pump(self) -> int:
        """Send what is buffered, as far as the in-flight limit allows; returns records sent."""
        self._reap()
        sent = 0
        if self.clock() < self.resend_at:
            return sent
        while self.buffer and len(self.in_flight) < self.max_in_flight:
            batch = [self.buffer.popleft() for _ in range(min(self.batch_size, len(self.buffer)))]
            try:
                ref = self.send(batch, self.dropped)
            except Exception as exc:
                log.warning("cannot reach the monitor: %s", first_line(exc))
                self._take_back(batch, 0)
                break
            answer = ref.future() if isinstance(ref, ray.ObjectRef) else ref
            self.in_flight.append(_Sent(answer, batch, self.dropped))
            self.dropped = 0
            sent += len(batch)
        return sent
