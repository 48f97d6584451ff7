"""DriftMonitor: the detached actor that receives the traffic log and answers for it.

Replicas hand it batches of prediction records fire-and-forget; it persists them as hourly
parquet (`<storage>/traffic/`), joins feedback to them, keeps the experiment counts, and
summarises each variant's traffic in tumbling windows of `monitor.window` records on the
champion's reference bins (drift.py). Every `CHECK_EVERY_S` it exports the drift gauges and
asks the retrain controller whether to submit a pipeline run; every `monitor.snapshot_minutes`
it snapshots its counts, deletes hours past `monitor.retention_days` and compacts closed hours.
A restarted actor re-runs its constructor, which reads the snapshot plus the log files it does
not cover (snapshot.py): records that reached a file are never lost or counted twice, and a
restart's memory and time do not grow with the log's age.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import ray

from app.cluster import call_self_after_init, detached_actor
from app.config import AppConfig, MonitorConfig, RetrainConfig
from app.files import atomic_write_text
from app.monitoring import retrain, snapshot
from app.monitoring.abtest import experiment_report
from app.monitoring.drift import DriftWindow
from app.monitoring.records import TrafficRecord
from app.monitoring.store import TrafficStore
from app.monitoring.traffic import FEEDBACK, PREDICTIONS

log = logging.getLogger(__name__)
MONITOR = "monitor"  # the actor's kind, in its name
FLUSH_EVERY_S = 1.0
FLUSH_RECORDS = 5_000
CHECK_EVERY_S = 10.0
HISTORY = 1_000  # completed windows remembered for drift over time


class DriftMonitor:
    def __init__(self, cfg: AppConfig, submit=None, job_running=None):
        self.cfg = cfg
        self.root = cfg.storage.traffic
        self.watch_only = frozenset() if cfg.monitor.alert_on_calendar else frozenset(cfg.features.time)
        self.store = TrafficStore(self.root, cfg.monitor)
        self._load_overrides()
        self.keep = self.store.keep
        self.flusher: asyncio.Task | None = None
        self.reference_version: int | None = None
        self.profile: dict = {}
        self.current: dict[str, DriftWindow] = {}  # variant -> the window being filled
        self.complete: dict[str, dict] = {}  # variant -> the last full window's report (final)
        self.registry = None
        self.history: deque[dict] = deque(maxlen=HISTORY)
        self.state_path = cfg.storage.retrain_state
        self.controller = retrain.load_state(self.state_path)
        self.submit = submit or retrain.submit_pipeline_job
        self.job_running = job_running or retrain.running_job
        self.metrics = None
        self._load_reference()
        self._rebuild()
        self._recover_unsaved()
        call_self_after_init("start")  # flushes, checks and the retrain schedule run on a quiet service too

    # ------------------------------------------------------------ reference and windows

    def _load_reference(self) -> bool:
        """Follow the champion: its bundle's profile is the reference. True if it changed."""
        from app.registry.registry import CHAMPION, Registry, RegistryError

        try:
            self.registry = self.registry or Registry(self.cfg)
            version = self.registry.alias_version(CHAMPION)
            if version is None or version == self.reference_version:
                return False
            profile = self.registry.load(version).profile
            ignored = set(self.cfg.monitor.ignore_features)
            self.profile = {
                **profile,
                "numeric": {k: v for k, v in profile.get("numeric", {}).items() if k not in ignored},
                "categorical": {k: v for k, v in profile.get("categorical", {}).items() if k not in ignored},
            }
        except (RegistryError, ValueError, OSError) as exc:
            log.warning("no reference profile yet: %s", exc)
            return False
        self.reference_version = version
        self.current, self.complete = {}, {}  # windows are counted on the reference's bins
        return True

    def _window_add(self, records: list[dict], *, remember: bool = True) -> None:
        if not self.profile or not records:
            return
        frame = pd.DataFrame.from_records(records)
        size = self.cfg.monitor.window
        for variant, part in frame.groupby("variant", sort=False):
            start = 0
            while start < len(part):
                window = self.current.setdefault(variant, DriftWindow(self.profile))
                take = part.iloc[start : start + size - window.n]
                window.add(take)
                start += len(take)
                if window.n >= size:  # tumbling: a full window is reported once, a new one starts
                    report = {
                        **window.report(psi_alert=self.cfg.monitor.psi_alert, watch_only=self.watch_only),
                        "window": "complete",
                    }
                    self.complete[variant] = report
                    self.current[variant] = DriftWindow(self.profile)
                    if remember:
                        self._remember(variant, report)

    def _remember(self, variant: str, r: dict) -> None:
        """A completed window's headline numbers, for drift over time (bounded)."""
        score = r["score"]["psi"] if r["score"] else None
        self.history.append(
            {
                "at": time.time(),
                "variant": variant,
                "n": r["n"],
                "max_psi": r["max_psi"],
                "score_psi": score,
                "drifted": r["drifted"],
            }
        )

    # ------------------------------------------------------------ persistence

    def _rebuild(self) -> None:
        state = self.store.rebuild()
        self.counts, self.recent = state.counts, state.recent
        records = [rec for recs in self.recent.values() for rec in recs]
        if records:  # the windows: the most recent records (two windows' worth per variant)
            frame = pd.DataFrame.from_records(records)
            frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
            self._window_add(frame.sort_values("logged_at", kind="stable").to_dict("records"), remember=False)
        self.history.extend(state.history)

    def _recover_unsaved(self) -> None:
        """Accept again what a killed predecessor accepted but had not flushed (wal.py); the
        records it had flushed are known by request id and skipped."""
        found = self.store.wal.recover()
        for records in found.values():
            for r in records:
                r["logged_at"] = pd.Timestamp(r["logged_at"])
        self._accept_predictions(found[PREDICTIONS], logged=True)
        for r in found[FEEDBACK]:
            self._accept_feedback(r["request_id"], r["label"], at=r["logged_at"], logged=True)
        if any(found.values()):
            log.info("recovered %s unflushed records", {k: len(v) for k, v in found.items()})
            try:
                self.flush()
            except OSError as exc:  # a full disk: they stay in the write-ahead log, counted
                log.error("could not persist the recovered records yet: %s", exc)
                return
            for kind in found:  # all persisted now, or already in the log before
                self.store.wal.clear(kind)

    def maintain(self, now: datetime | None = None) -> dict:
        """Snapshot the counts, delete expired hours, compact closed ones (store.py)."""
        state = snapshot.MonitorState(self.counts, self.recent, list(self.history))
        return self.store.maintain(state, now=now)

    async def reload(self, monitor: dict, retrain_section: dict) -> dict:
        """New thresholds, schedule and cooldown from a changed config (`mlsys monitor reload`):
        the actor keeps the config it was created with otherwise. Saved, so a restarted
        monitor keeps them. Window and buffer sizes apply from the next window on. Returns the
        keys that changed."""
        changed = self._apply_sections(monitor, retrain_section)
        sections = {"monitor": self.cfg.monitor.model_dump(), "retrain": self.cfg.retrain.model_dump()}
        atomic_write_text(self.cfg.storage.monitor_overrides, json.dumps(sections))
        log.info("monitor config reloaded: %s", changed or "no change")
        return changed

    def _apply_sections(self, monitor: dict, retrain_section: dict) -> dict:
        new = self.cfg.model_copy(
            update={
                "monitor": MonitorConfig.model_validate(monitor),
                "retrain": RetrainConfig.model_validate(retrain_section),
            }
        )
        changed = {
            f"{section}.{k}": v
            for section in ("monitor", "retrain")
            for k, v in getattr(new, section).model_dump().items()
            if getattr(self.cfg, section).model_dump()[k] != v
        }
        self.cfg = new
        self.store.cfg = new.monitor
        self.watch_only = frozenset() if new.monitor.alert_on_calendar else frozenset(new.features.time)
        return changed

    def _load_overrides(self) -> None:
        """The sections a `reload` saved, over the config the actor was created with."""
        path = self.cfg.storage.monitor_overrides
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            self._apply_sections(saved["monitor"], saved["retrain"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # pydantic's errors are ValueErrors
            log.warning("reloaded monitor config %s is unreadable (%s): using the deployed one", path, exc)

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
        new = self._accept_predictions([r.row() for r in records])
        if len(self.store.unsaved[PREDICTIONS]) >= FLUSH_RECORDS:
            self.flush()
        return len(new)

    async def feedback(self, request_id: str, label: int, may_wait: bool = True) -> str:
        """ "joined", "duplicate", "pending" (kept until its prediction arrives, if `may_wait`)
        or "recorded" (its prediction is no longer remembered: the outcome goes to the log only,
        where training joins it)."""
        self._start_flusher()
        now = datetime.now(timezone.utc)
        if not may_wait and not self.counts.knows(request_id):
            self._log_feedback(request_id, label, at=now)
            return "recorded"
        return self._accept_feedback(request_id, label, at=now)

    def _accept_predictions(self, records: list[dict], *, logged: bool = False) -> list[dict]:
        if not logged:  # in the write-ahead log before anything counts them (a full disk refuses the batch)
            self.store.wal.append(PREDICTIONS, records)
        new = [r for r in records if self.counts.add_prediction(r)]
        ok = [r for r in new if r.get("status") == "ok"]
        self._window_add(ok)
        for r in ok:
            self.recent.setdefault(r["variant"], deque(maxlen=self.keep)).append(r)
        self.store.add(PREDICTIONS, new, logged=True)
        return new

    def _accept_feedback(self, request_id: str, label: int, *, at, logged: bool = False) -> str:
        status = self.counts.add_feedback(request_id, label)
        if status != "duplicate":
            self._log_feedback(request_id, label, at=at, logged=logged)
        return status

    def _log_feedback(self, request_id: str, label: int, *, at, logged: bool = False) -> None:
        self.store.add(
            FEEDBACK, [{"request_id": request_id, "label": int(label), "logged_at": at}], logged=logged
        )

    # ------------------------------------------------------------ reports and decisions

    def drift(self) -> dict:
        """Per variant: the last complete window's report (or the partial one before any)."""
        variants = {}
        for variant in sorted(set(self.current) | set(self.complete)):
            if variant in self.complete:
                variants[variant] = self.complete[variant]
            else:
                partial = self.current[variant].report(
                    psi_alert=self.cfg.monitor.psi_alert, watch_only=self.watch_only
                )
                variants[variant] = {**partial, "window": "partial"}
        alert = any(r["alert"] and r["window"] == "complete" for r in variants.values())
        return {
            "reference_version": self.reference_version,
            "window_size": self.cfg.monitor.window,
            "psi_alert": self.cfg.monitor.psi_alert,
            "alert": alert,
            "variants": variants,
            "dropped_records": self.store.counters["dropped_records"],
            "traffic_log": self._log_state(),
            "history": list(self.history),
            "retrain": {
                "incident_open": self.controller.incident_open,
                "submitted": self.controller.submitted[-10:],
                "decisions": self.controller.decisions[-10:],
            },
        }

    def check(self, now: float | None = None) -> dict:
        """Follow the champion, export gauges, and let the controller decide on a retrain."""
        if self._load_reference():
            log.info("reference profile: champion version %s", self.reference_version)
        report = self.drift()
        self._export(report)
        complete = [r for r in report["variants"].values() if r["window"] == "complete"]
        samples = max((r["n"] for r in complete if r["alert"]), default=0)
        now = time.time() if now is None else now
        busy = (
            self.job_running(self.cfg, self.controller)
            if report["alert"] or retrain.schedule_due(self.controller, self.cfg.retrain, now)
            else None
        )
        trigger, reason = retrain.decide(
            self.controller,
            self.cfg.retrain,
            now=now,
            drift_alert=report["alert"],
            window_samples=samples,
            running_job=busy,
        )
        job_id = None
        if trigger:
            try:
                job_id = self.submit(self.cfg, reason)
                log.warning("retrain submitted (%s): job %s", reason, job_id)
            except Exception as exc:
                reason = f"{reason}; submission failed: {str(exc).splitlines()[0]}"
                trigger = None  # not counted as submitted: the next check tries again
                self.controller.incident_open = False
        retrain.record(self.controller, now=now, trigger=trigger, reason=reason, job_id=job_id)
        retrain.save_state(self.state_path, self.controller)
        return report

    def _export(self, report: dict) -> None:
        if not ray.is_initialized():  # used as a plain object (tests, scripts): nothing to export
            return
        if self.metrics is None:
            from app.monitoring.metrics import MonitorMetrics

            self.metrics = MonitorMetrics()
        for variant, r in report["variants"].items():
            self.metrics.drift(variant, r)
        self.metrics.dropped.set(report["dropped_records"])
        self.metrics.retrains.set(len(self.controller.submitted))

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
            dropped_records=self.store.counters["dropped_records"],
            pending_feedback=len(self.counts.pending),
            pending_dropped=self.counts.pending_dropped,
            generated_at=time.time(),
        )
        return out

    async def recent_p99(self, experiment: str, variant: str, last: int) -> float | None:
        """The p99 latency of a variant's last `last` requests: the rollout judges a challenger
        on its own requests, not on those of the challengers before it."""
        s = self.counts.stats.get((experiment, variant))
        sample = list(s.latency_ms)[-last:] if s is not None and last > 0 else []
        return float(np.percentile(sample, 99)) if sample else None

    def _log_state(self) -> dict:
        """The traffic log's housekeeping, for `mlsys monitor status` and the report."""
        return {
            **self.store.counters,
            "pending_feedback": len(self.counts.pending),
            "pending_dropped": self.counts.pending_dropped,
            "rebuilt": self.store.rebuilt,
        }


def get_monitor(cfg: AppConfig):
    """The monitor actor for this storage root, created on first use and kept (detached)."""
    return detached_actor(DriftMonitor, MONITOR, str(cfg.storage.path()), cfg, max_concurrency=64)


def reload_config(cfg: AppConfig) -> dict:
    """Hand the running monitor new `monitor` and `retrain` sections; returns what changed."""
    from app.cluster import join_running

    join_running(cfg.ray)
    return ray.get(get_monitor(cfg).reload.remote(cfg.monitor.model_dump(), cfg.retrain.model_dump()))


def drift_report(cfg: AppConfig) -> dict:
    """The running monitor's drift report (joins the cluster the service runs on)."""
    from app.cluster import join_running

    join_running(cfg.ray)
    return ray.get(get_monitor(cfg).drift.remote())
