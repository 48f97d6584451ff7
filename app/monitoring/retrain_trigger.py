"""RetrainTrigger: the retrain controller's decision on a drift report, the job it submits,
and the bookkeeping that makes one incident one retrain across restarts.

retrain.py decides (pure) and submits; this reads the drift report, asks whether the last
retrain still runs (only when a decision could trigger: the Jobs API is a network call), keeps
every decision with its reason and saves the state after each look, in the shared state store:
a monitor started elsewhere on the same store adopts it, and a decision stored by another
monitor meanwhile is kept (this one's is recorded on top of it, never over it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.config import AppConfig
from app.data.state import StateConflict, StateStore, update
from app.errors import first_line
from app.monitoring import retrain
from app.monitoring.messages import COMPLETE, DriftReport, RetrainDecision, RetrainLog

log = logging.getLogger(__name__)
SHOWN = 10  # submissions and decisions a drift report carries

Submit = Callable[[AppConfig, str], str]  # (config, reason) -> job id
JobRunning = Callable[[AppConfig, retrain.ControllerState], "str | None"]  # -> the running job's id


class RetrainTrigger:
    def __init__(
        self,
        store: StateStore,
        key: str,
        *,
        submit: Submit | None = None,
        job_running: JobRunning | None = None,
    ):
        self.store, self.key, self.where = store, key, f"{store.location}/{key}"
        self.version: str | None = None  # of the stored state: what the next write replaces
        self._refresh()
        self.submit = submit or retrain.submit_pipeline_job
        self.job_running = job_running or retrain.running_job

    @property
    def submitted(self) -> int:
        """Retrain jobs submitted so far."""
        return len(self.state.submitted)

    def check(
        self, cfg: AppConfig, drift: DriftReport, *, now: float, decay: tuple[int, float] = (0, 0.0)
    ) -> RetrainDecision:
        """Decide on `drift`, `decay` (the champion's decayed labelled windows and their span)
        and the schedule; submit a retrain if one triggers, record it."""
        self._refresh()
        samples = max(
            (r.n for r in drift.variants.values() if r.window == COMPLETE and r.alert),
            default=0,
        )
        could_trigger = drift.alert or decay[0] > 0 or retrain.schedule_due(self.state, cfg.retrain, now)
        scheduled_before = self.state.last_scheduled_at
        trigger, reason = retrain.decide(
            self.state,
            cfg.retrain,
            now=now,
            drift_alert=drift.alert,
            window_samples=samples,
            running_job=self.job_running(cfg, self.state) if could_trigger else None,
            persisted=retrain.drift_run([(h.at, h.variant, bool(h.drifted)) for h in drift.history]),
            decay=decay,
        )
        job_id = None
        if trigger:
            try:
                job_id = self.submit(cfg, reason)
                log.warning("retrain submitted (%s): job %s", reason, job_id)
            except Exception as exc:  # the Jobs API down or refusing: the next check tries again
                reason = f"{reason}; submission failed: {first_line(exc)}"
                trigger = None  # not counted as submitted
                self.state.incident_open = False
                self.state.last_scheduled_at = scheduled_before
        entry = {"now": now, "trigger": trigger, "reason": reason, "job_id": job_id}
        retrain.record(self.state, **entry)
        self._save(entry)
        return RetrainDecision(at=now, trigger=trigger, reason=reason, job_id=job_id)

    def _refresh(self) -> None:
        stored = self.store.read(self.key)
        if stored is None or stored.version != self.version:
            self.state = retrain.parse_state(None if stored is None else stored.data, self.where)
            self.version = None if stored is None else stored.version

    def _save(self, entry: dict) -> None:
        try:
            self.version = self.store.write(self.key, retrain.dump_state(self.state), replaces=self.version)
        except StateConflict:
            log.warning("retrain state %s was written by another monitor: recording on top of it", self.where)

            def on_top(data: bytes | None) -> bytes:
                self.state = retrain.parse_state(data, self.where)
                retrain.record(self.state, **entry)
                return retrain.dump_state(self.state)

            self.version = update(self.store, self.key, on_top).version

    def log(self) -> RetrainLog:
        """The open incident and the latest submissions and decisions."""
        return RetrainLog(
            incident_open=self.state.incident_open,
            submitted=tuple(RetrainDecision.model_validate(e) for e in self.state.submitted[-SHOWN:]),
            decisions=tuple(RetrainDecision.model_validate(e) for e in self.state.decisions[-SHOWN:]),
        )
