"""TrafficStore: the monitor's persisted side - records not yet written, the log files it
knows, the snapshot, and the log's housekeeping (retention, compaction).

The monitor counts; this writes and remembers what it wrote. What it accepts goes to a
write-ahead log first (wal.py) and into parquet parts on the next flush. Every `maintain` writes the
snapshot first, naming every file the counts include (and the compactions about to run), then
deletes expired hours and compacts closed ones: a crash at any point leaves a snapshot whose
covered files are exactly those its counts include (snapshot.py, compaction.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from app.config import MonitorConfig
from app.data.shared_files import as_files
from app.monitoring import compaction, snapshot
from app.monitoring.counts import ExperimentCounts
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, Root, write_records
from app.monitoring.wal import WriteAheadLog

log = logging.getLogger(__name__)


class TrafficStore:
    def __init__(
        self,
        root: Root,
        cfg: MonitorConfig,
        *,
        max_outcomes_per_key: int | None = None,
        wal: Path | None = None,
    ):
        """`root`: the traffic log; `wal`: a folder on this node's disk (default: `wal` in a
        local `root`), where accepted records wait for the next flush."""
        self.root = as_files(root)
        self.cfg = cfg
        self.max_outcomes_per_key = max_outcomes_per_key  # rollout.max_outcomes_per_key
        self.keep = 2 * cfg.window  # recent records per variant, to replay the drift windows
        self.unsaved: dict[str, list[dict]] = {PREDICTIONS: [], FEEDBACK: []}
        self.files = snapshot.empty_files()  # every log file present, by kind and hour
        self.counters = dict.fromkeys(
            ("unreadable_files", "expired_hours", "compacted_files", "dropped_records"), 0
        )
        if wal is None and self.root.remote:
            raise ValueError(
                f"the traffic log {self.root.location} is on an object store: name a local wal folder"
            )
        self.wal = WriteAheadLog(wal or Path(self.root.location, "wal"), snapshot.KINDS)
        self.rebuilt: dict = {}

    def rebuild(self) -> snapshot.MonitorState:
        """The snapshot (if readable) plus every log file it does not cover."""
        capacities = {
            "capacity": self.cfg.remembered_predictions,
            "pending_capacity": self.cfg.pending_feedback,
        }
        saved = snapshot.load(self.root, keep=self.keep, **capacities)
        state = saved or snapshot.MonitorState(ExperimentCounts(**capacities))
        state.counts.max_per_key = self.max_outcomes_per_key  # before the replay counts any outcome
        replay = snapshot.replay(self.root, state, keep=self.keep)
        self.files = replay.files
        self.counters.update(state.counters)
        self.counters["unreadable_files"] += replay.unreadable
        self.rebuilt = {
            "snapshot": saved is not None,
            "files_read": replay.files_read,
            "records_read": replay.records_read,
        }
        log.info("monitor state rebuilt: %s", self.rebuilt)
        return state

    def add(self, kind: str, records: list[dict], *, logged: bool = False) -> None:
        """Accept records: in the write-ahead log at once (unless `logged` there already), in
        the parquet log at the next flush."""
        if not logged:
            self.wal.append(kind, records)
        self.unsaved[kind].extend(records)

    def flush(self) -> int:
        """Persist what arrived since the last flush; returns records written."""
        written = 0
        for kind, buf in self.unsaved.items():
            if buf:
                batch = list(buf)
                for uri in write_records(self.root, kind, batch):
                    hour, name = uri.rsplit("/", 2)[-2:]
                    self.files[kind].setdefault(hour, set()).add(name)
                del buf[: len(batch)]
                self.wal.clear(kind)  # the flush runs on the actor's loop: nothing arrived since
                written += len(batch)
        return written

    def maintain(self, state: snapshot.MonitorState, *, now: datetime | None = None) -> dict:
        """Snapshot `state` (counts, recent records, history), then delete expired hours and
        compact closed ones. Returns the housekeeping counters."""
        now = now or datetime.now(timezone.utc)
        self.flush()  # raises on a full disk: nothing unsaved is ever covered by a snapshot
        days = self.cfg.retention_days
        expired = compaction.expired_hours(self.root, snapshot.KINDS, now=now, retention_days=days)
        plans = compaction.plan(self.files, now=now, retention_days=days)
        # Covered: every file counted, the expired ones too (deleted only after the save), and
        # the compactions' outputs, named before they exist: a crash at any point below leaves
        # a snapshot that counts nothing twice.
        state.covered = {
            kind: {h: set(names) for h, names in hours.items()} for kind, hours in self.files.items()
        }
        for p in plans:
            state.covered[p.kind][p.hour].add(p.output)
        self.counters["expired_hours"] += len(expired)
        self.counters["compacted_files"] += sum(len(p.inputs) for p in plans)
        state.counters = self.counters
        snapshot.save(self.root, state)
        compaction.delete(self.root, expired)
        for kind, hour in expired:
            self.files[kind].pop(hour, None)
        for p in plans:
            folder = self.root.under(p.kind, p.hour)
            self.counters["unreadable_files"] += compaction.compact_hour(
                folder, p.inputs, p.output
            ).unreadable
            names = self.files[p.kind][p.hour] - set(p.inputs)
            self.files[p.kind][p.hour] = names | (
                {p.output} if folder.exists(folder.uri(p.output)) else set()
            )
        return dict(self.counters)
