"""TrafficIntake: where the monitor's records arrive, and how a restarted monitor gets them back.

A prediction row is written to the write-ahead log, counted (counts.py: a request id seen
before is skipped), windowed if it succeeded (drift_tracker.py), kept among the variant's
recent rows (the windows' replay after a restart) and queued for the parquet log (store.py).
A restart rebuilds the counts from the snapshot plus the log files it does not cover, replays
the recent rows into the windows, then accepts again what the write-ahead log holds.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime

import pandas as pd

from app.monitoring import snapshot
from app.monitoring.drift_tracker import DriftTracker
from app.monitoring.records import OK, UNATTRIBUTED
from app.monitoring.store import TrafficStore
from app.monitoring.traffic import FEEDBACK, PREDICTIONS

log = logging.getLogger(__name__)


class TrafficIntake:
    def __init__(self, store: TrafficStore, tracker: DriftTracker):
        self.store, self.tracker = store, tracker
        self.keep = store.keep  # recent rows per variant: two windows' worth
        state = store.rebuild()
        self.counts, self.recent = state.counts, state.recent
        self.tracker.restore_history(state.history)

    def replay_windows(self) -> None:
        """Fill the drift windows from the recent rows, oldest first (already in the history)."""
        records = [rec for recs in self.recent.values() for rec in recs]
        if records:
            frame = pd.DataFrame.from_records(records)
            frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
            self.tracker.add(frame.sort_values("logged_at", kind="stable").to_dict("records"), remember=False)

    def recover(self) -> dict[str, int]:
        """Accept again what a killed predecessor accepted but had not flushed (wal.py); the
        records it had flushed are known by request id and skipped. Returns the records found."""
        found = self.store.wal.recover()
        for records in found.values():
            for r in records:
                r["logged_at"] = pd.Timestamp(r["logged_at"])
        self.predictions(found[PREDICTIONS], logged=True)
        for r in found[FEEDBACK]:
            producer = r.get("producer") or UNATTRIBUTED
            self.feedback(r["request_id"], r["label"], producer=producer, at=r["logged_at"], logged=True)
        if any(found.values()):
            log.info("recovered %s unflushed records", {k: len(v) for k, v in found.items()})
            try:
                self.store.flush()
            except OSError as exc:  # a full disk: they stay in the write-ahead log, counted
                log.error("could not persist the recovered records yet: %s", exc)
            else:
                for kind in found:  # all persisted now, or already in the log before
                    self.store.wal.clear(kind)
        return {kind: len(records) for kind, records in found.items()}

    def predictions(self, rows: list[dict], *, logged: bool = False) -> list[dict]:
        """Accept prediction rows (`logged`: already in the write-ahead log); returns the new ones."""
        if not logged:  # in the write-ahead log before anything counts them (a full disk refuses the batch)
            self.store.wal.append(PREDICTIONS, rows)
        new = [r for r in rows if self.counts.add_prediction(r)]
        ok = [r for r in new if r.get("status") == OK]
        self.tracker.add(ok)
        for r in ok:
            self.recent.setdefault(r["variant"], deque(maxlen=self.keep)).append(r)
        self.store.add(PREDICTIONS, new, logged=True)
        return new

    def feedback(
        self, request_id: str, label: int, *, producer: str, at: datetime, logged: bool = False
    ) -> str:
        """Join an outcome to its prediction and log it: "joined", "duplicate" or "pending"."""
        status = self.counts.add_feedback(request_id, label, producer)
        if status != "duplicate":
            self.log_feedback(request_id, label, producer=producer, at=at, logged=logged)
        return status

    def log_feedback(
        self, request_id: str, label: int, *, producer: str, at: datetime, logged: bool = False
    ) -> None:
        """Log an outcome (and who reported it) for training, without counting it."""
        row = {"request_id": request_id, "label": int(label), "producer": producer, "logged_at": at}
        self.store.add(FEEDBACK, [row], logged=logged)

    def state(self) -> snapshot.MonitorState:
        """What the snapshot saves: the counts, the recent rows and the drift history."""
        return snapshot.MonitorState(self.counts, self.recent, self.tracker.history_rows())
