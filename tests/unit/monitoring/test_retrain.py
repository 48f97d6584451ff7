"""The retrain controller's persisted state: an unreadable file gives a fresh state, not a crash."""

from __future__ import annotations

import json

import pytest

from app.monitoring import retrain


def test_state_round_trips():
    state = retrain.ControllerState(started_at=1.0, incident_open=True)
    retrain.record(state, now=2.0, trigger="drift", reason="psi", job_id="j1")
    assert retrain.parse_state(retrain.dump_state(state), "here") == state


@pytest.mark.parametrize(
    "text",
    [
        '{"started_at": 1.0, "submitted": [',
        "null",
        '{"started_at": "soon"}',
        '{"started_at": 1, "submitted": 3}',
    ],
)
def test_an_unreadable_state_file_is_treated_as_absent(caplog, text):
    state = retrain.parse_state(text.encode(), "store/monitoring/retrain.json")
    assert state.submitted == [] and not state.incident_open and state.started_at > 1e9
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("store/monitoring/retrain.json" in m for m in warned)
    assert json.loads(retrain.dump_state(state))["started_at"] == state.started_at


def test_nothing_triggers_while_the_last_retrain_still_runs():
    from app.config import RetrainConfig

    cfg = RetrainConfig(
        schedule="every 1h",
        on_drift=True,
        cooldown_minutes=0,
        min_samples=10,
        drift_windows=1,
        drift_minutes=0,
    )
    state = retrain.ControllerState(started_at=0.0)
    busy = retrain.decide(
        state, cfg, now=7200, drift_alert=True, window_samples=100, running_job="raysubmit_1"
    )
    assert busy == (None, "the last retrain (job raysubmit_1) is still running")
    assert not state.incident_open, "the incident opens once the job has ended"
    assert retrain.decide(state, cfg, now=7200, drift_alert=True, window_samples=100)[0] == "drift"


def test_the_running_job_is_asked_of_the_jobs_api_and_an_unknown_one_never_blocks(tmp_path, monkeypatch):
    from tests.configs import make_config

    cfg = make_config(tmp_path)
    state = retrain.ControllerState(started_at=0.0)
    assert retrain.running_job(cfg, state) is None  # nothing submitted yet
    retrain.record(state, now=1.0, trigger="drift", reason="psi", job_id="raysubmit_1")
    statuses = iter(["RUNNING", "SUCCEEDED"])

    class Jobs:
        def get_job_status(self, job_id):
            assert job_id == "raysubmit_1"
            return next(statuses)

    monkeypatch.setattr(retrain, "jobs_client", lambda cfg: Jobs())
    assert retrain.running_job(cfg, state) == "raysubmit_1"
    assert retrain.running_job(cfg, state) is None

    def unreachable(cfg):
        raise ConnectionError("dashboard restarting")

    monkeypatch.setattr(retrain, "jobs_client", unreachable)
    assert retrain.running_job(cfg, state) is None


def test_a_decay_of_the_champions_outcomes_retrains_once_when_it_persists():
    from app.config import RetrainConfig

    cfg = RetrainConfig(schedule="none", cooldown_minutes=0, drift_windows=2, drift_minutes=5)
    state = retrain.ControllerState(started_at=0.0)

    def decide(decay, now=1000.0, **kw):
        return retrain.decide(state, cfg, now=now, drift_alert=False, window_samples=0, decay=decay, **kw)

    trigger, reason = decide((1, 0.0))
    assert trigger is None and "decayed on 1 window(s)" in reason  # one window is not an incident yet
    assert decide((2, 120.0))[0] is None  # two windows, but within two minutes
    trigger, reason = decide((3, 400.0))
    assert trigger == "decay" and "3 consecutive windows" in reason
    assert decide((4, 460.0)) == (None, "decay incident already handled; waiting for a clean window")
    assert decide((0, 0.0)) == (None, "no trigger") and not state.incident_open  # a clean window closes it
    assert decide((3, 400.0), now=2000.0)[0] == "decay"  # a new incident
    off = RetrainConfig(schedule="none", on_decay=False, drift_windows=1, drift_minutes=0)
    assert retrain.decide(
        retrain.ControllerState(started_at=0.0),
        off,
        now=1,
        drift_alert=False,
        window_samples=0,
        decay=(5, 900.0),
    ) == (None, "no trigger")
