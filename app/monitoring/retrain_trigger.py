"""RetrainTrigger: the retrain controller's decision on a drift report, the job it submits,
and the bookkeeping that makes one incident one retrain across restarts.

retrain.py decides (pure) and submits; this reads the drift report, asks whether the last
retrain still runs (only when a decision could trigger: the Jobs API is a network call), keeps
every decision with its reason and saves the state after each look.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from app.config import AppConfig
from app.errors import first_line
from app.monitoring import retrain
from app.monitoring.messages import COMPLETE, DriftReport, RetrainDecision, RetrainLog

log = logging.getLogger(__name__)
SHOWN = 10  # submissions and decisions a drift report carries

Submit = Callable[[AppConfig, str], str]  # (config, reason) -> job id
JobRunning = Callable[[AppConfig, retrain.ControllerState], "str | None"]  # -> the running job's id


class RetrainTrigger:
    def __init__(self, path: Path, *, submit: Submit | None = None, job_running: JobRunning | None = None):
        self.path = path
        self.state = retrain.load_state(path)
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
        retrain.record(self.state, now=now, trigger=trigger, reason=reason, job_id=job_id)
        retrain.save_state(self.path, self.state)
        return RetrainDecision(at=now, trigger=trigger, reason=reason, job_id=job_id)

    def log(self) -> RetrainLog:
        """The open incident and the latest submissions and decisions."""
        return RetrainLog(
            incident_open=self.state.incident_open,
            submitted=tuple(RetrainDecision.model_validate(e) for e in self.state.submitted[-SHOWN:]),
            decisions=tuple(RetrainDecision.model_validate(e) for e in self.state.decisions[-SHOWN:]),
        )
