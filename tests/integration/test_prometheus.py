"""The Grafana dashboard and the alert rules against a live Prometheus scraping a live service.

A real `prometheus` (Debian's package; CI installs it) runs with the shipped
deployments/prometheus/prometheus.yml, its Ray target pointed at the test cluster's node and its
intervals shortened, and the shipped alerts.yml. The service gets predictions, outcomes from a
producer and a drifted window; then every panel query of deployments/grafana/mlsys.json, every
recording rule and every alert's measured quantity must return a series: a name that no
process exports, or a series that exists only after a rare event, shows up as an empty answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import ray
import requests
import yaml

from tests.configs import ROOT, make_config
from tests.helpers import ab_service, free_port, model_inputs

pytestmark = pytest.mark.integration
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    not PROMETHEUS and not os.environ.get("CI"), reason="prometheus not installed (CI installs it)"
)
DASHBOARD = ROOT / "deployments" / "grafana" / "mlsys.json"
RULES = ROOT / "deployments" / "prometheus" / "alerts.yml"
SCRAPE = ROOT / "deployments" / "prometheus" / "prometheus.yml"
DEADLINE_S = 180  # Ray exports every few seconds; rates need two scrapes; two busy cores
# The comparison that ends an alert's expression: what is left is the quantity it watches.
COMPARISON = re.compile(r"\s(?:>|<|>=|<=|==|!=)\s")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prometheus")
    cfg = make_config(
        tmp,
        serve={
            "http_port": free_port(),
            "ingress": {"min_replicas": 1, "max_replicas": 1},
            "experiment": {"name": "exp-prom", "split": {"champion": 0.5, "challenger": 0.5}},
        },
        # A labelled window completes on the ~25 outcomes each variant gets (its gauges exist
        # from the first complete window on).
        monitor={"window": 200, "performance_window": 20},
    )
    with ab_service(cfg, tmp, token="prometheus-token") as service:
        yield service


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    assert PROMETHEUS, "prometheus missing: .ci/run installs Debian's prometheus package"
    tmp = tmp_path_factory.mktemp("prometheus-server")
    port = free_port()
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(RULES, metrics_targets())))
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("prometheus ready", lambda: ready(url), 60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def metrics_targets() -> list[str]:
    """Ray's metrics endpoint of every live node of the cluster: the replicas' request metrics
    and the monitor actor's gauges both leave through it."""
    return [f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}" for n in ray.nodes() if n["Alive"]]


def scrape_config(rules: Path, targets: list[str]) -> dict:
    """The shipped scrape config with its target list replaced and its intervals shortened."""
    config = yaml.safe_load(SCRAPE.read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == ["ray"]
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules)]
    config["scrape_configs"][0].pop("file_sd_configs")
    config["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
    return config


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_for(what: str, check, timeout_s: float = DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def query(url: str, expr: str) -> list[dict]:
    resp = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = resp.json()
    assert body.get("status") == "success", (expr, body)
    return body["data"]["result"]


def panel_queries() -> dict[str, str]:
    """Every panel target's expression, template variables replaced by a match-anything regex."""
    board = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in board["panels"]:
        for i, target in enumerate(panel.get("targets", [])):
            expr = re.sub(r"\$\{?\w+\}?", ".*", target["expr"])
            queries[f"{panel['title']} [{i}]"] = expr
    return queries


def rule_queries() -> dict[str, str]:
    """Every recording rule, and every alert's expression up to its first comparison."""
    queries = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                queries[rule["record"]] = rule["expr"]
            else:
                queries[rule["alert"]] = COMPARISON.split(rule["expr"], maxsplit=1)[0]
    return queries


def send_traffic(service) -> None:
    """Predictions by entity, an outcome for each from the producer (both labels, so that a
    labelled window has an AUC), and a drifted batch."""
    url, cfg = service["url"], service["cfg"]
    for i, entity in enumerate(service["entities"]):
        row = requests.post(f"{url}/predict", json={"entity_id": entity}, timeout=30).json()
        outcome = {
            "request_id": row["request_id"],
            "label": i % 2,
            "feedback_token": row["feedback_token"],
        }
        ack = requests.post(f"{url}/feedback", json=outcome, headers=service["outcomes"], timeout=30)
        assert ack.status_code == 200, ack.text[:500]
    columns = [*cfg.dataset.numeric, *cfg.dataset.categorical]  # what a caller sends
    drifted = model_inputs(cfg, 400, seed=9, drift=1.0)[columns]
    for start in range(0, len(drifted), 100):
        rows = json.loads(drifted.iloc[start : start + 100].to_json(orient="records"))
        instances = [{"features": row, "key": f"drifted-{start + i}"} for i, row in enumerate(rows)]
        resp = requests.post(f"{url}/predict", json={"instances": instances}, timeout=60)
        assert resp.status_code == 200, resp.text[:500]


@pytest.fixture(scope="module")
def fed(service, prometheus) -> str:
    """Prometheus's URL once the service has had its traffic."""
    send_traffic(service)
    return prometheus


@needs_prometheus
def test_every_panel_and_alert_query_returns_a_series_from_the_live_service(fed):
    queries = {**panel_queries(), **rule_queries()}
    assert len(queries) >= 10
    deadline = time.monotonic() + DEADLINE_S
    empty = dict(queries)
    while empty and time.monotonic() < deadline:
        empty = {name: expr for name, expr in empty.items() if not query(fed, expr)}
        time.sleep(2)
    assert not empty, f"queries that returned no series: {empty}"


@needs_prometheus
def test_drifted_traffic_sets_off_the_drift_alert(fed):
    """The full drift rule (PSI over the threshold) holds, and Prometheus has the alert pending."""
    drift_rule = next(
        r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == "MlsysFeatureDrift"
    )
    wait_for("PSI over the alert threshold", lambda: query(fed, drift_rule["expr"]))

    def drift_alert():
        alerts = requests.get(f"{fed}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "MlsysFeatureDrift"]

    alerts = wait_for("the MlsysFeatureDrift alert", drift_alert, 60)
    assert {a["state"] for a in alerts} <= {"pending", "firing"}
