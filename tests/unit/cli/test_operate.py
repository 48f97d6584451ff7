"""`mlsys monitor status` as a user runs it against a running monitor (its report stood in for):
the drift table, the labelled windows and the retrain decisions, read from the typed report."""

from __future__ import annotations

import yaml

from app.monitoring import monitor
from app.monitoring.messages import RetrainDecision, RetrainLog
from tests.configs import config_dict
from tests.doubles import drift_report, performance_window
from tests.unit.cli.test_outcomes_load import mlsys


def test_monitor_status_prints_drift_the_labelled_windows_and_the_decisions(tmp_path, monkeypatch, capsys):
    data = config_dict()
    data["storage"] = {"root": str(tmp_path / "store")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    decision = RetrainDecision(
        at=1.0, trigger="decay", reason="the champion's outcomes decayed", job_id="raysubmit_1"
    )
    report = drift_report().model_copy(
        update={
            "performance": {"champion": performance_window(auc=0.41, decayed=True)},
            "performance_alert": True,
            "retrain": RetrainLog(incident_open=True, submitted=(decision,), decisions=(decision,)),
        }
    )
    monkeypatch.setattr(monitor, "drift_report", lambda cfg: report)
    code, out, err = mlsys(capsys, "--config", config, "monitor", "status")
    assert code == 0, err
    assert (
        "drift vs champion v1" in out and "labelled performance (DECAYED)" in out and "0.410 decayed" in out
    )
    assert "retrain decision: decay - the champion's outcomes decayed (job raysubmit_1)" in out
