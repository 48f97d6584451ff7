"""DriftMonitor: the detached actor that receives the traffic log and answers for it.

Replicas hand it batches of prediction records fire-and-forget; it persists them as hourly
parquet (`<storage>/traffic/`), joins feedback to them, and keeps the experiment counts. A
restarted actor re-runs its constructor, so everything it reports is rebuilt from the
persisted log there: records that reached a file are never lost or counted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime, timezone

import ray

from app.config import AppConfig
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, ExperimentCounts, read_records, write_records
from app.serving.experiment import experiment_report

log = logging.getLogger(__name__)
NAMESPACE = "mlsys"
FLUSH_EVERY_S = 1.0
FLUSH_RECORDS = 5_000


def actor_name(kind: str, cfg: AppConfig) -> str:
    """One actor per storage root, so two deployments on one cluster never share state."""
    return f"mlsys-{kind}-{hashlib.sha256(str(cfg.storage.path()).encode()).hexdigest()[:8]}"


class DriftMonitor:
    def __init__(self, cfg: AppConfig):
        self.cfg = cfg
        self.root = cfg.storage.path("traffic")
        self.counts = ExperimentCounts()
        self.unsaved: list[dict] = []
        self.unsaved_feedback: list[dict] = []
        self.flusher: asyncio.Task | None = None
        self.dropped_upstream = 0
        self._rebuild()

    def _rebuild(self) -> None:
        preds = read_records(self.root, PREDICTIONS)
        for rec in preds.to_dict("records"):
            self.counts.add_prediction(rec)
        feedback = read_records(self.root, FEEDBACK)
        for rec in feedback.to_dict("records"):
            self.counts.add_feedback(rec["request_id"], int(rec["label"]))
        if len(preds):
            log.info("rebuilt from %d persisted predictions, %d feedbacks", len(preds), len(feedback))

    def _start_flusher(self) -> None:
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            self.flush()

    def flush(self) -> int:
        """Persist what arrived since the last flush; returns records written."""
        written = 0
        for kind, buf in ((PREDICTIONS, self.unsaved), (FEEDBACK, self.unsaved_feedback)):
            if buf:
                batch = list(buf)
                write_records(self.root, kind, batch)
                del buf[: len(batch)]
                written += len(batch)
        return written

    async def ingest(self, records: list[dict], dropped: int = 0) -> int:
        """Count and queue a batch of prediction records; returns how many were new."""
        self._start_flusher()
        self.dropped_upstream += dropped
        new = [r for r in records if self.counts.add_prediction(r)]
        self.unsaved.extend(new)
        if len(self.unsaved) >= FLUSH_RECORDS:
            self.flush()
        return len(new)

    async def feedback(self, request_id: str, label: int) -> str:
        self._start_flusher()
        status = self.counts.add_feedback(request_id, label)
        if status != "duplicate":
            self.unsaved_feedback.append(
                {"request_id": request_id, "label": int(label), "logged_at": datetime.now(timezone.utc)}
            )
        return status

    async def report(self, experiment: dict) -> dict:
        """The experiment report for the given experiment settings (ExperimentConfig fields)."""
        stats = self.counts.for_experiment(experiment["name"])
        out = experiment_report(
            stats,
            control=experiment["control"],
            metric=experiment["metric"],
            alpha=experiment["alpha"],
            mde=experiment["mde"],
            power=experiment["power"],
        )
        out.update(
            experiment=experiment["name"],
            dropped_records=self.dropped_upstream,
            pending_feedback=len(self.counts.pending),
            generated_at=time.time(),
        )
        return out


def get_monitor(cfg: AppConfig):
    """The monitor actor for this storage root, created on first use and kept (detached)."""
    return (
        ray.remote(DriftMonitor)
        .options(
            name=actor_name("monitor", cfg),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,  # mostly waiting; it must never block a replica from being placed
            max_concurrency=64,
        )
        .remote(cfg)
    )
