"""The retrain controller's persisted state: an unreadable file gives a fresh state, not a crash."""

from __future__ import annotations

import json

import pytest

from app.monitoring import retrain


def test_state_round_trips(tmp_path):
    path = tmp_path / "retrain.json"
    state = retrain.ControllerState(started_at=1.0, incident_open=True)
    retrain.record(state, now=2.0, trigger="drift", reason="psi", job_id="j1")
    retrain.save_state(path, state)
    assert retrain.load_state(path) == state


@pytest.mark.parametrize(
    "text",
    [
        '{"started_at": 1.0, "submitted": [',
        "null",
        '{"started_at": "soon"}',
        '{"started_at": 1, "submitted": 3}',
    ],
)
def test_an_unreadable_state_file_is_treated_as_absent(tmp_path, caplog, text):
    path = tmp_path / "retrain.json"
    path.write_text(text)
    state = retrain.load_state(path)
    assert state.submitted == [] and not state.incident_open and state.started_at > 1e9
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    retrain.save_state(path, state)
    assert json.loads(path.read_text())["started_at"] == state.started_at
