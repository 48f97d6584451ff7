"""The retrain trigger without Ray: a drift report in, a typed decision out, one retrain per
incident across restarts, never while the last one runs, and a failed submission retried."""

from __future__ import annotations

import pytest

from app.data.state import state_store
from app.monitoring.messages import RetrainDecision
from app.monitoring.retrain_trigger import SHOWN, RetrainTrigger
from tests.configs import make_config
from tests.doubles import drift_report, window_report

DRIFTED = drift_report({"champion": window_report(n=1000, alert=True)})
CALM = drift_report()


class Jobs:
    """The Jobs API as the trigger sees it: submissions, and the job still running (or None)."""

    def __init__(self, running: str | None = None, fail: Exception | None = None):
        self.submitted: list[str] = []
        self.running, self.fail, self.asked = running, fail, 0

    def submit(self, cfg, reason: str) -> str:
        if self.fail is not None:
            raise self.fail
        self.submitted.append(reason)
        return f"job-{len(self.submitted)}"

    def job_running(self, cfg, state) -> str | None:
        self.asked += 1
        return self.running


@pytest.fixture
def cfg(tmp_path):
    # One complete window is enough here: persistence has tests of its own below.
    retrain = {
        "schedule": "none",
        "min_samples": 400,
        "cooldown_minutes": 60,
        "drift_windows": 1,
        "drift_minutes": 0,
    }
    return make_config(tmp_path, retrain=retrain)


def trigger(cfg, jobs: Jobs) -> RetrainTrigger:
    return RetrainTrigger(
        state_store(cfg.storage), cfg.storage.retrain_state, submit=jobs.submit, job_running=jobs.job_running
    )


def test_one_incident_submits_one_retrain_even_across_a_restart(cfg):
    jobs = Jobs()
    first = trigger(cfg, jobs)
    decision = first.check(cfg, DRIFTED, now=1000.0)
    assert decision == RetrainDecision(at=1000.0, trigger="drift", reason=decision.reason, job_id="job-1")
    assert "(the last of 1000 records)" in decision.reason and first.submitted == 1
    restarted = trigger(cfg, jobs)  # the state was saved: the incident is still open
    again = restarted.check(cfg, DRIFTED, now=1060.0)
    assert again.trigger is None and "already handled" in again.reason and jobs.submitted == [decision.reason]
    log = restarted.log()
    assert log.incident_open and [e.job_id for e in log.submitted] == ["job-1"]
    assert [d.trigger for d in log.decisions] == ["drift", None]


def test_a_monitor_started_beside_a_running_one_sees_its_incident_and_submits_nothing(
    cfg, state_storage, tmp_path
):
    """Two monitors on one state store (one restarted elsewhere while the first still runs):
    the second's look starts from what the first stored, so one incident is one retrain."""
    cfg = make_config(tmp_path, retrain=cfg.retrain.model_dump(), storage=state_storage)
    jobs = Jobs()
    first, second = trigger(cfg, jobs), trigger(cfg, jobs)  # both read the empty state
    assert first.check(cfg, DRIFTED, now=1000.0).trigger == "drift"
    assert second.check(cfg, DRIFTED, now=1001.0).trigger is None and len(jobs.submitted) == 1
    assert first.check(cfg, CALM, now=1060.0).reason == "no trigger"  # writes over second's, seen
    assert [d.at for d in trigger(cfg, jobs).log().decisions] == [1000.0, 1001.0, 1060.0]


def test_a_clean_window_closes_the_incident_and_the_cooldown_holds_the_next(cfg):
    jobs = Jobs()
    t = trigger(cfg, jobs)
    t.check(cfg, DRIFTED, now=1000.0)
    assert t.check(cfg, CALM, now=1060.0).reason == "no trigger" and not t.log().incident_open
    assert "cooldown" in t.check(cfg, DRIFTED, now=1120.0).reason
    assert t.check(cfg, DRIFTED, now=1000.0 + 3601).trigger == "drift" and len(jobs.submitted) == 2


def test_partial_windows_and_small_windows_do_not_trigger(cfg):
    jobs = Jobs()
    t = trigger(cfg, jobs)
    partial = drift_report({"champion": window_report(n=900, alert=True, window="partial")})
    assert not partial.alert and t.check(cfg, partial, now=1000.0).reason == "no trigger"
    small = drift_report({"champion": window_report(n=300, alert=True)})
    assert "fewer than min_samples 400" in t.check(cfg, small, now=1010.0).reason
    assert jobs.submitted == []


def test_nothing_is_submitted_while_the_last_retrain_runs_and_the_api_is_asked_only_when_needed(cfg):
    jobs = Jobs(running="job-0")
    t = trigger(cfg, jobs)
    t.check(cfg, CALM, now=1000.0)
    assert jobs.asked == 0  # no drift and no schedule due: no call to the Jobs API
    decision = t.check(cfg, DRIFTED, now=1010.0)
    assert decision.reason == "the last retrain (job job-0) is still running" and jobs.submitted == []
    jobs.running = None  # it ended
    assert t.check(cfg, DRIFTED, now=1020.0).job_id == "job-1" and jobs.asked == 2


@pytest.mark.parametrize(
    ("error", "shown"),
    [(RuntimeError("dashboard down\nTraceback ..."), "dashboard down"), (OSError(), "OSError")],
)
def test_a_failed_submission_is_recorded_and_tried_again(cfg, error, shown):
    jobs = Jobs(fail=error)
    t = trigger(cfg, jobs)
    decision = t.check(cfg, DRIFTED, now=1000.0)
    assert decision.trigger is None and decision.reason.endswith(f"submission failed: {shown}")
    assert not t.log().incident_open and t.submitted == 0
    jobs.fail = None
    assert t.check(cfg, DRIFTED, now=1010.0).trigger == "drift"


def test_the_schedule_triggers_once_per_period(cfg):
    hourly = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"schedule": "hourly"})})
    jobs = Jobs()
    t = trigger(hourly, jobs)
    start = t.state.started_at
    assert t.check(hourly, CALM, now=start + 10).trigger is None
    assert t.check(hourly, CALM, now=start + 3601).trigger == "schedule"
    assert t.check(hourly, CALM, now=start + 3700).trigger is None


def test_the_log_shows_the_latest_decisions_only(cfg):
    jobs = Jobs()
    t = trigger(cfg, jobs)
    for i in range(SHOWN + 5):  # alternating reasons: each decision is kept
        report = drift_report({"champion": window_report(n=100 + i, alert=True)})
        t.check(cfg, report, now=1000.0 + i)
    decisions = t.log().decisions
    assert len(decisions) == SHOWN and decisions[-1].reason.startswith(
        f"drift seen on {100 + SHOWN + 4} records"
    )


def drifted_windows(*minutes: float):
    """A drift report whose history holds drifted complete windows ending at these minutes."""
    from app.monitoring.messages import HistoryPoint

    points = tuple(
        HistoryPoint(at=m * 60, variant="champion", n=1000, max_psi=0.5, score_psi=None, drifted=("x",))
        for m in minutes
    )
    return drift_report({"champion": window_report(n=1000, alert=True)}, history=points)


def test_one_burst_of_shifted_requests_starts_no_job_and_persistent_drift_does(tmp_path):
    """Anyone can send a burst that fills a window with shifted rows: a job needs the drift to
    hold over `drift_windows` consecutive windows spanning `drift_minutes`."""
    cfg = make_config(
        tmp_path, retrain={"schedule": "none", "min_samples": 400, "drift_windows": 2, "drift_minutes": 10}
    )
    jobs = Jobs()
    t = trigger(cfg, jobs)
    burst = t.check(cfg, drifted_windows(0), now=60.0)
    assert burst.trigger is None and "retrain.drift_windows" in burst.reason
    quick = t.check(cfg, drifted_windows(0, 0.5), now=90.0)  # a second burst at once: too short
    assert quick.trigger is None and jobs.submitted == []
    held = t.check(cfg, drifted_windows(0, 5, 11), now=11 * 60.0)
    assert held.trigger == "drift" and len(jobs.submitted) == 1 and "3 consecutive" in held.reason


def test_the_daily_budget_bounds_jobs_whatever_triggers_them(tmp_path):
    retrain = {
        "schedule": "none",
        "min_samples": 400,
        "cooldown_minutes": 0,
        "drift_windows": 1,
        "drift_minutes": 0,
    }
    cfg = make_config(tmp_path, retrain={**retrain, "max_per_day": 2})
    jobs = Jobs()
    t = trigger(cfg, jobs)
    for hour in range(6):  # a new incident every hour: drift, then a clean window
        t.check(cfg, DRIFTED, now=hour * 3600.0)
        t.check(cfg, CALM, now=hour * 3600.0 + 600)
    assert len(jobs.submitted) == 2
    assert "budget" in t.log().decisions[-2].reason
    t.check(cfg, DRIFTED, now=25 * 3600.0)  # a day after the first: budget again
    assert len(jobs.submitted) == 3
