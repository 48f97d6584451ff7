"""The Prometheus alert rules (rendered from the config; promtool fires and clears each one)
and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.config import ConfigError, MonitorConfig, load_config, parse_config
from app.monitoring import alerts, metrics
from tests.configs import LOCAL_CONFIG, ROOT

PROM = ROOT / "deployments" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    not PROMTOOL and not os.environ.get("CI"), reason="promtool not installed (CI installs it)"
)
# Every threshold moved from the default (100 ms, 1 %, 20 % drop, PSI 0.2).
OTHER = MonitorConfig(p99_ms_alert=250, error_rate_alert=0.05, qps_drop_alert=0.5, psi_alert=0.3)


def _promtool_passes(folder: Path) -> None:
    assert PROMTOOL, "promtool missing: .ci/run installs Debian's prometheus package"
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([PROMTOOL, *args], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def _alerts(rules_text: str) -> dict[str, dict]:
    rules = yaml.safe_load(rules_text)
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


@needs_promtool
def test_promtool_fires_and_clears_every_alert():
    _promtool_passes(PROM)


def test_the_shipped_files_are_the_default_configs_rendering():
    rendered = alerts.render(load_config(LOCAL_CONFIG, environ={}).monitor)
    assert set(rendered) == {"alerts.yml", "alerts_test.yml"}
    for name, text in rendered.items():
        assert (PROM / name).read_text() == text, (
            f"{name} is stale: run `mlsys alerts --out deployments/prometheus`"
        )


def test_other_thresholds_reach_the_expressions_and_annotations():
    rendered = alerts.render(OTHER)
    rules = _alerts(rendered["alerts.yml"])
    assert rules["MlsysLatencyP99High"]["expr"].endswith("> 0.25")
    assert "over 250 ms" in rules["MlsysLatencyP99High"]["annotations"]["summary"]
    assert rules["MlsysErrorRateHigh"]["expr"].endswith("> 0.05")
    assert "over 5 %" in rules["MlsysErrorRateHigh"]["annotations"]["summary"]
    assert rules["MlsysQpsDrop"]["expr"].startswith("mlsys:qps:rate5m < 0.5 * avg_over_time(")
    assert "below 50 % of its 6-hour average" in rules["MlsysQpsDrop"]["annotations"]["summary"]
    assert rules["MlsysFeatureDrift"]["expr"].endswith("> 0.3")
    assert rules["MlsysFeatureDrift"]["annotations"]["summary"].endswith("is over 0.3")
    # The for/severity/runbook of each alert do not depend on the thresholds.
    default = _alerts((PROM / "alerts.yml").read_text())
    for name, rule in rules.items():
        assert (rule["for"], rule["labels"], rule["annotations"]["runbook"]) == (
            default[name]["for"],
            default[name]["labels"],
            default[name]["annotations"]["runbook"],
        )


@needs_promtool
def test_promtool_fires_and_clears_every_alert_for_other_thresholds(tmp_path):
    for name, text in alerts.render(OTHER).items():
        (tmp_path / name).write_text(text)
    _promtool_passes(tmp_path)


@pytest.mark.parametrize(
    "key, value",
    [("p99_ms_alert", 0), ("error_rate_alert", 1.0), ("qps_drop_alert", 1.5), ("psi_alert", -0.1)],
)
def test_thresholds_no_alert_can_be_written_for_are_refused_at_config_load(key, value):
    with pytest.raises(ConfigError, match=f"monitor.{key}"):
        parse_config({"monitor": {key: value}}, environ={})


def test_the_alerts_command_writes_both_files(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        LOCAL_CONFIG.read_text().replace("p99_ms_alert: 100", "p99_ms_alert: 250"), encoding="utf-8"
    )
    out = tmp_path / "new" / "prometheus"
    done = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(config), "alerts", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["alerts.yml", "alerts_test.yml"]
    assert str(out / "alerts.yml") in done.stdout and str(out / "alerts_test.yml") in done.stdout
    assert _alerts((out / "alerts.yml").read_text())["MlsysLatencyP99High"]["expr"].endswith("> 0.25")


def test_the_five_alerts_exist_and_use_declared_metric_names():
    rules = _alerts((PROM / "alerts.yml").read_text())
    assert set(rules) == {
        "MlsysLatencyP99High",
        "MlsysQpsDrop",
        "MlsysErrorRateHigh",
        "MlsysFeatureDrift",
        "MlsysPerformanceDecay",
    }
    assert all(r.get("for") and r["labels"].get("severity") for r in rules.values())
    tested = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    assert {t["alertname"] for case in tested["tests"] for t in case["alert_rule_test"]} == set(rules)
    declared = {
        metrics.REQUESTS,
        metrics.ERRORS,
        metrics.LATENCY,
        metrics.PSI,
        metrics.KS,
        metrics.ALERT,
        metrics.DROPPED,
        metrics.RETRAINS,
        metrics.OUTCOME_AUC,
        metrics.OUTCOME_LOG_LOSS,
        metrics.OUTCOME_CALIBRATION,
        metrics.ESTIMATED_AUC,
        metrics.AUC_BAND_LOW,
        metrics.DECAY,
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
        "outcome_auc",
        "estimated_auc",
        "performance_decay",
    ):
        assert name in exprs
