"""The Prometheus alert rules (promtool fires and clears each one) and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from app.monitoring import metrics
from tests.conftest import ROOT

PROM = ROOT / "deployments" / "prometheus"
PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    not PROMTOOL and not os.environ.get("CI"), reason="promtool not installed (CI installs it)"
)
def test_promtool_fires_and_clears_every_alert():
    assert PROMTOOL, "promtool missing: .ci/run installs Debian's prometheus package"
    subprocess.run([PROMTOOL, "check", "rules", str(PROM / "alerts.yml")], check=True, capture_output=True)
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(PROM / "alerts_test.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_four_alerts_exist_and_use_declared_metric_names():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == {"MlsysLatencyP99High", "MlsysQpsDrop", "MlsysErrorRateHigh", "MlsysFeatureDrift"}
    assert all(r.get("for") and r["labels"].get("severity") for r in alerts.values())
    tested = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    assert {t["alertname"] for case in tested["tests"] for t in case["alert_rule_test"]} == set(alerts)
    declared = {
        metrics.REQUESTS,
        metrics.ERRORS,
        metrics.LATENCY,
        metrics.PSI,
        metrics.KS,
        metrics.ALERT,
        metrics.DROPPED,
        metrics.RETRAINS,
    }
    text = (PROM / "alerts.yml").read_text() + (ROOT / "deployments/grafana/mlsys.json").read_text()
    used = set(re.findall(r"ray_(mlsys_[a-z_]+?)(?:_total|_bucket)?\b", text))
    assert used <= declared, used - declared


def test_grafana_dashboard_has_a_panel_per_signal():
    dash = json.loads((ROOT / "deployments/grafana/mlsys.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for name in (
        "mlsys_requests_total",
        "latency_seconds_bucket",
        "feature_psi",
        "drift_alert",
        "traffic_dropped",
    ):
        assert name in exprs
