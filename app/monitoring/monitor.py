"""DriftMonitor: the detached actor that receives the traffic log and answers for it.

A shell over units that each do one job: replicas hand it `TrafficRecord` batches
fire-and-forget, and the intake (intake.py) counts them (counts.py), windows them on the
champion's reference (drift_tracker.py) and persists them (store.py: write-ahead log, hourly
parquet, snapshot). Its housekeeping loop flushes every `FLUSH_EVERY_S`; every `CHECK_EVERY_S`
it follows the champion, exports the gauges (metrics_export.py) and lets the retrain trigger
decide (retrain_trigger.py); every `monitor.snapshot_minutes` it snapshots, expires and
compacts. A restarted actor re-runs its constructor, which reads the snapshot plus the log
files it does not cover and the write-ahead log (snapshot.py, wal.py): records that reached
either are never lost or counted twice. Every answer is a typed message (messages.py,
experiment.py); reloaded settings are saved over the deployed ones (overrides.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone

import ray

from app.cluster.actors import call_self_after_init, detached_actor
from app.config import AppConfig, ExperimentConfig, MonitorConfig, RetrainConfig
from app.data.state import state_store
from app.monitoring import bands, drift_tracker, overrides
from app.monitoring.drift_tracker import DriftTracker
from app.monitoring.experiment import ExperimentReport
from app.monitoring.intake import TrafficIntake
from app.monitoring.messages import (
    CheckResult,
    DriftReport,
    Housekeeping,
    Rebuilt,
    ReloadResult,
    TrafficLogState,
)
from app.monitoring.metrics_export import MetricsExport
from app.monitoring.performance import PerformanceTracker, decay_run
from app.monitoring.records import TrafficRecord
from app.monitoring.retrain_trigger import JobRunning, RetrainTrigger, Submit
from app.monitoring.store import TrafficStore
from app.monitoring.traffic import PREDICTIONS, traffic_log

log = logging.getLogger(__name__)
MONITOR = "monitor"  # the actor's kind, in its name
FLUSH_EVERY_S = 1.0
FLUSH_RECORDS = 5_000
CHECK_EVERY_S = 10.0


class DriftMonitor:
    def __init__(self, cfg: AppConfig, submit: Submit | None = None, job_running: JobRunning | None = None):
        self.root = traffic_log(cfg.storage)
        caps = {"max_outcomes_per_key": cfg.rollout.max_outcomes_per_key, "wal": cfg.storage.wal}
        self.store = TrafficStore(self.root, cfg.monitor, **caps)  # buffers sized by the deployed config
        self.cfg = overrides.load(cfg)
        self.store.cfg = self.cfg.monitor
        self.tracker = DriftTracker(**drift_tracker.settings(self.cfg))
        self.trigger = RetrainTrigger(
            state_store(cfg.storage), cfg.storage.retrain_state, submit=submit, job_running=job_running
        )
        self.export = MetricsExport()
        self.registry = None
        self.flusher: asyncio.Task | None = None
        self.references: dict[int, tuple[dict, float | None]] = {}  # version -> (profile, holdout AUC)
        self.performance = PerformanceTracker(self.cfg.monitor.performance_window, self._band_for)
        self._follow_champion()  # first: the windows are replayed on the reference's bins
        self.intake = TrafficIntake(self.store, self.tracker)
        self.intake.counts.on_outcome = self._outcome
        self.intake.replay_windows()
        self.intake.recover()
        call_self_after_init("start")  # flushes, checks and the retrain schedule run on a quiet service too

    def _follow_champion(self) -> bool:
        """The champion's bundle profile is the reference. True if it changed."""
        from app.registry.registry import CHAMPION, Registry, RegistryError

        try:
            self.registry = self.registry or Registry(self.cfg)
            version = self.registry.alias_version(CHAMPION)
            if version is None or version == self.tracker.reference_version:
                return False
            self.tracker.follow(version, self._reference(version)[0])
        except (RegistryError, ValueError, OSError) as exc:
            log.warning("no reference profile yet: %s", exc)
            return False
        return True

    def _reference(self, version: int) -> tuple[dict, float | None]:
        """A registered version's profile and holdout AUC (loaded once per version)."""
        if version not in self.references:
            from app.registry.registry import Registry

            self.registry = self.registry or Registry(self.cfg)
            bundle = self.registry.load(version)
            self.references[version] = (bundle.profile, (bundle.metrics.get("holdout") or {}).get("auc"))
        return self.references[version]

    def _band_for(self, version: int | None) -> bands.PerformanceBand | None:
        """The band a version's labelled windows are judged by; None when it cannot be loaded."""
        from app.registry.registry import RegistryError

        if version is None:
            return None
        try:
            profile, auc = self._reference(version)
        except (RegistryError, ValueError, OSError) as exc:
            log.warning("no band for version %s: %s", version, exc)
            return None
        m = self.cfg.monitor
        return bands.performance_band(
            profile, auc, window=m.performance_window, auc_drop=m.auc_drop, mode=m.performance_band
        )

    def _outcome(self, experiment: str, variant: str, version: int | None, score: float, label: int) -> None:
        """A counted outcome (counts.py): into its variant's labelled window."""
        self.performance.add(variant, version, score, label)

    # ------------------------------------------------------------ persistence

    def maintain(self, now: datetime | None = None) -> Housekeeping:
        """Snapshot the counts, delete expired hours, compact closed ones (store.py)."""
        return Housekeeping(**self.store.maintain(self.intake.state(), now=now))

    async def reload(
        self, monitor: MonitorConfig | Mapping, retrain_section: RetrainConfig | Mapping
    ) -> ReloadResult:
        """New thresholds, schedule and cooldown from a changed config (`mlsys monitor reload`):
        the actor keeps the config it was created with otherwise. Saved, so a restarted
        monitor keeps them. Window and buffer sizes apply from the next window on."""
        self.cfg, result = overrides.apply(self.cfg, monitor, retrain_section)
        self.store.cfg = self.cfg.monitor
        self.tracker.configure(**drift_tracker.settings(self.cfg))
        self.performance.resize(self.cfg.monitor.performance_window)
        overrides.save(self.cfg)
        log.info("monitor config reloaded: %s", result.changed or "no change")
        return result

    # ------------------------------------------------------------ the housekeeping loop

    async def start(self) -> None:
        """Start the housekeeping loop (flushes, drift checks, schedule, snapshots)."""
        self._start_flusher()

    def _start_flusher(self) -> None:
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        last_check = last_maintain = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                self.flush()
                if time.monotonic() - last_check >= CHECK_EVERY_S:
                    last_check = time.monotonic()
                    self.check()
                if time.monotonic() - last_maintain >= self.cfg.monitor.snapshot_minutes * 60:
                    last_maintain = time.monotonic()
                    self.maintain()
            except Exception:  # a full disk or a bad record must not stop the loop
                log.exception("monitor housekeeping failed")

    def flush(self) -> int:
        """Persist what arrived since the last flush; returns records written."""
        return self.store.flush()

    # ------------------------------------------------------------ calls from replicas

    async def ingest(self, records: list[TrafficRecord], dropped: int = 0) -> int:
        """Count, window and queue a batch of prediction records; returns how many were new."""
        self._start_flusher()
        self.store.counters["dropped_records"] += dropped
        new = self.intake.predictions([r.row() for r in records])
        if len(self.store.unsaved[PREDICTIONS]) >= FLUSH_RECORDS:
            self.flush()
        return len(new)

    async def feedback(self, request_id: str, label: int, may_wait: bool = True, *, producer: str) -> str:
        """An outcome from `producer`: "joined", "duplicate", "pending" (kept until its
        prediction arrives, if `may_wait`) or "recorded" (its prediction is no longer
        remembered: the outcome goes to the log only, where online learning and the production
        table join it)."""
        self._start_flusher()
        now = datetime.now(timezone.utc)
        if not may_wait and not self.intake.counts.knows(request_id):
            self.intake.log_feedback(request_id, label, producer=producer, at=now)
            return "recorded"
        return self.intake.feedback(request_id, label, producer=producer, at=now)

    async def feedback_batch(self, outcomes: list[tuple[str, int]], *, producer: str) -> list[str]:
        """Outcomes loaded from `producer`'s files (`mlsys outcomes load`, outcome_load.py), each
        for a prediction found in the traffic log: per outcome "joined", "duplicate" (labelled
        already) or "recorded" (a prediction no longer remembered: logged for online learning and retraining).
        One step of the actor's loop: no other outcome arrives in between."""
        return [await self.feedback(rid, label, False, producer=producer) for rid, label in outcomes]

    # ------------------------------------------------------------ reports and decisions

    def drift(self) -> DriftReport:
        """Per variant the last complete window's report (or the partial one before any)."""
        windows = self.tracker.windows()
        performance = self.performance.windows()
        return DriftReport(
            reference_version=self.tracker.reference_version,
            window_size=self.cfg.monitor.window,
            psi_alert=self.cfg.monitor.psi_alert,
            alert=drift_tracker.alerting(windows),
            variants=windows,
            dropped_records=self.store.counters["dropped_records"],
            traffic_log=self._log_state(),
            history=tuple(self.tracker.history),
            retrain=self.trigger.log(),
            performance=performance,
            performance_alert=any(w.decayed for w in performance.values()),
            performance_history=tuple(self.performance.history),
            psi_band=self.tracker.band,
        )

    def check(self, now: float | None = None) -> CheckResult:
        """Follow the champion, export the gauges, and let the trigger decide on a retrain (on
        drift, or on decay of the control's labelled windows: the champion's, by default)."""
        if self._follow_champion():
            log.info("reference profile: champion version %s", self.tracker.reference_version)
        report = self.drift()
        self.export.export(report, retrains=self.trigger.submitted)
        decay = decay_run(report.performance_history, self.cfg.serve.experiment.control)
        decision = self.trigger.check(self.cfg, report, now=time.time() if now is None else now, decay=decay)
        return CheckResult(drift=report, decision=decision)

    async def report(self, experiment: ExperimentConfig | Mapping) -> ExperimentReport:
        """The experiment report for these experiment settings (a mapping of ExperimentConfig
        fields is validated into one)."""
        settings = ExperimentConfig.model_validate(experiment)
        return self.intake.counts.report(settings, dropped_records=self.store.counters["dropped_records"])

    async def recent_p99(self, experiment: str, variant: str, last: int) -> float | None:
        """The p99 latency of a variant's last `last` requests: the rollout judges a challenger
        on its own requests, not on those of the challengers before it."""
        return self.intake.counts.recent_p99(experiment, variant, last)

    def _log_state(self) -> TrafficLogState:
        """The traffic log's housekeeping, for `mlsys monitor status` and the report."""
        rebuilt = self.store.rebuilt
        return TrafficLogState(
            **self.store.counters,
            pending_feedback=len(self.intake.counts.pending),
            pending_dropped=self.intake.counts.pending_dropped,
            rebuilt=Rebuilt(**rebuilt) if rebuilt else None,
        )


def get_monitor(cfg: AppConfig):
    """The monitor actor for this storage root, created on first use and kept (detached)."""
    return detached_actor(DriftMonitor, MONITOR, str(cfg.storage.path()), cfg, max_concurrency=64)


def reload_config(cfg: AppConfig) -> ReloadResult:
    """Hand the running monitor new `monitor` and `retrain` sections; returns what changed."""
    from app.cluster.connection import join_running

    join_running(cfg.ray)
    return ray.get(get_monitor(cfg).reload.remote(cfg.monitor, cfg.retrain))


def drift_report(cfg: AppConfig) -> DriftReport:
    """The running monitor's drift report (joins the cluster the service runs on)."""
    from app.cluster.connection import join_running

    join_running(cfg.ray)
    return ray.get(get_monitor(cfg).drift.remote())
