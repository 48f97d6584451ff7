"""The retraining controller: when to retrain (pure), and submitting `mlsys pipeline` as a Ray Job.

A drift incident opens when a complete window of at least `retrain.min_samples` records has a
feature over the PSI alert level, a decay incident when the champion's labelled windows decay
(performance.py); either must persist (`retrain.drift_windows` windows over
`retrain.drift_minutes`) and closes when its windows are clean again: one incident triggers
one retrain, and never twice within `retrain.cooldown_minutes`. Independently, the
schedule (`hourly`, `daily`, `weekly`, `every 6h`, `every 30m`, or `none`) triggers a run once
per period. Every decision is kept with its reason (and persisted, so a restarted monitor
neither forgets an open incident nor retrains again at start; an unreadable state file is
treated as absent, with one warning).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from app.config import AppConfig, RetrainConfig
from app.errors import first_line

log = logging.getLogger(__name__)
MAX_DECISIONS = 50
DAY_S = 86400.0
STATUS_TIMEOUT_S = 5.0
RETRAIN_CONFIG = "retrain-config.yaml"  # in the job's working directory


@dataclass
class ControllerState:
    started_at: float
    last_submit_at: float | None = None
    last_scheduled_at: float | None = None
    incident_open: bool = False
    submitted: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)


def decide(
    state: ControllerState,
    cfg: RetrainConfig,
    *,
    now: float,
    drift_alert: bool,
    window_samples: int,
    running_job: str | None = None,
    persisted: tuple[int, float] = (1, 0.0),
    decay: tuple[int, float] = (0, 0.0),
) -> tuple[str | None, str]:
    """("drift" | "decay" | "schedule" | None, reason). Mutates the incident bookkeeping in
    `state`. While `running_job` (the last retrain, still pending or running) is set, nothing
    triggers: two pipelines would train on the same data and race to register. `persisted`: the
    drift's consecutive complete windows and the seconds they span (`drift_run`); `decay`: the
    same for the champion's decayed labelled windows (performance.decay_run)."""
    cooling = state.last_submit_at is not None and now - state.last_submit_at < cfg.cooldown_minutes * 60
    if running_job is not None:
        return None, f"the last retrain (job {running_job}) is still running"
    decaying = cfg.on_decay and decay[0] > 0
    spent = sum(1 for s in state.submitted if now - s["at"] < DAY_S)
    if spent >= cfg.max_per_day and (drift_alert or decaying or schedule_due(state, cfg, now)):
        return None, f"the retrain budget is spent: {spent} jobs in the last 24 h (retrain.max_per_day)"
    incident, waiting = None, None
    if cfg.on_drift and drift_alert:
        incident, waiting = _drift_incident(cfg, window_samples, persisted)
    if incident is None and decaying:
        incident, waiting = _decay_incident(cfg, decay, waiting)
    if incident is not None:
        kind, reason = incident
        if state.incident_open:
            return None, f"{kind} incident already handled; waiting for a clean window"
        if cooling:
            return None, f"{kind}, but within the cooldown after the last retrain"
        state.incident_open = True
        return kind, reason
    if waiting is not None:
        return None, waiting
    if not drift_alert and not decaying and state.incident_open:
        state.incident_open = False
    if schedule_due(state, cfg, now) and not cooling:
        since = state.last_scheduled_at or state.started_at
        state.last_scheduled_at = now
        return "schedule", f"schedule {cfg.schedule!r}: {now - since:.0f} s since the last run"
    return None, "no trigger"


def _drift_incident(
    cfg: RetrainConfig, window_samples: int, persisted: tuple[int, float]
) -> tuple[tuple[str, str] | None, str | None]:
    """(("drift", reason), None) for drift that persisted, else (None, why it does not count yet)."""
    if window_samples < cfg.min_samples:
        return None, f"drift seen on {window_samples} records, fewer than min_samples {cfg.min_samples}"
    windows, span_s = max(persisted[0], 1), persisted[1]  # the alerting window is one
    if windows < cfg.drift_windows or span_s < cfg.drift_minutes * 60:
        return None, (
            f"drift on {windows} window(s) over {span_s / 60:.1f} min; a retrain needs "
            f"{cfg.drift_windows} over at least {cfg.drift_minutes:g} min (retrain.drift_windows)"
        )
    return (
        "drift",
        f"PSI over the alert level on {windows} consecutive complete windows over "
        f"{span_s / 60:.1f} min (the last of {window_samples} records)",
    ), None


def _decay_incident(
    cfg: RetrainConfig, decay: tuple[int, float], waiting: str | None
) -> tuple[tuple[str, str] | None, str | None]:
    """(("decay", reason), None) for a decay of the champion's labelled metrics that persisted
    as drift must; else (None, why not yet), keeping drift's reason when there is one."""
    windows, span_s = decay
    if windows < cfg.drift_windows or span_s < cfg.drift_minutes * 60:
        return None, waiting or (
            f"the champion's outcomes decayed on {windows} window(s) over {span_s / 60:.1f} min; "
            f"a retrain needs {cfg.drift_windows} over at least {cfg.drift_minutes:g} min "
            "(retrain.drift_windows)"
        )
    return (
        "decay",
        f"the champion's labelled performance under its band on {windows} consecutive windows "
        f"over {span_s / 60:.1f} min",
    ), None


def drift_run(points: list[tuple[float, str, bool]]) -> tuple[int, float]:
    """(windows, seconds): the longest run of consecutive drifted complete windows that a
    variant is in now, from (completed at, variant, drifted) in time order."""
    runs: dict[str, list[float]] = {}
    for at, variant, drifted in points:
        runs[variant] = [*runs.get(variant, []), at] if drifted else []
    best = max(runs.values(), key=len, default=[])
    return len(best), (best[-1] - best[0]) if best else 0.0


def schedule_due(state: ControllerState, cfg: RetrainConfig, now: float) -> bool:
    """Whether `retrain.schedule`'s period has passed since the last scheduled run (or start)."""
    since = state.last_scheduled_at or state.started_at
    return cfg.period_seconds is not None and now - since >= cfg.period_seconds


def record(
    state: ControllerState, *, now: float, trigger: str | None, reason: str, job_id: str | None
) -> None:
    entry = {"at": now, "trigger": trigger, "reason": reason, "job_id": job_id}
    if trigger:
        state.last_submit_at = now
        state.submitted.append(entry)
    # Keep every submission, and the latest of the "nothing to do" decisions.
    if trigger or not state.decisions or state.decisions[-1]["reason"] != reason:
        state.decisions = [*state.decisions, entry][-MAX_DECISIONS:]


def parse_state(data: bytes | None, where: str) -> ControllerState:
    """The persisted controller state; a fresh one if it is absent or cannot be read."""
    if data is not None:
        try:
            state = ControllerState(**json.loads(data))
            float(state.started_at)  # a garbled file can parse and still not be a state
            if not (isinstance(state.submitted, list) and isinstance(state.decisions, list)):
                raise TypeError("submitted and decisions must be lists")
            return state
        except (ValueError, TypeError) as exc:
            log.warning("retrain state %s is unreadable (%s): starting afresh", where, exc)
    return ControllerState(started_at=time.time())


def dump_state(state: ControllerState) -> bytes:
    return json.dumps(asdict(state)).encode()


def jobs_client(cfg: AppConfig):
    """The Jobs API client; Ray's token authentication is on by default since Ray 2.5x."""
    from ray.job_submission import JobSubmissionClient

    if (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    return JobSubmissionClient(cfg.retrain.jobs_address)


def running_job(cfg: AppConfig, state: ControllerState) -> str | None:
    """The last submitted retrain job if it is still pending or running (asked of the Jobs
    API); None when it ended, or when its status cannot be read (an unknown job never blocks)."""
    if not state.submitted:
        return None
    job_id = state.submitted[-1].get("job_id")
    if not job_id:
        return None
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:  # at most a few seconds: the monitor's loop waits for the answer
        status = pool.submit(lambda: jobs_client(cfg).get_job_status(job_id)).result(timeout=STATUS_TIMEOUT_S)
    except Exception as exc:  # the dashboard restarting or slow, a job from an earlier cluster
        log.info("retrain job %s: status unknown (%s)", job_id, first_line(exc))
        return None
    finally:
        pool.shutdown(wait=False)  # a hung call is left behind, not waited for
    return job_id if str(getattr(status, "value", status)) in ("PENDING", "RUNNING") else None


def submit_pipeline_job(cfg: AppConfig, reason: str) -> str:
    """Submit `mlsys pipeline` with this config to the cluster's Jobs API; returns the job id.
    The config travels with the job (its working directory, uploaded through the cluster), so
    the job reads it on whichever node runs it: nothing is left on this node's disk."""
    client = jobs_client(cfg)
    with tempfile.TemporaryDirectory(prefix="mlsys-retrain-") as folder:
        config = Path(folder, RETRAIN_CONFIG)
        config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        # This interpreter, not a `mlsys` on PATH: the job's shell may not have the venv activated.
        return client.submit_job(
            entrypoint=f"{shlex.quote(sys.executable)} -m app --config {RETRAIN_CONFIG} pipeline",
            runtime_env={"working_dir": folder},
            metadata={"mlsys.trigger": reason[:200]},
        )
