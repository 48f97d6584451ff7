"""The loop closing without a person, on a real Serve app over HTTP: a good challenger rolled
out and promoted by the rollout controller, a harmful one rolled back to `rejected`, with no
failed request; then labels flipped for one segment through the public routes, and online
learning that proposes the poisoned model, which the gate rejects (the champion never moves)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from app.data.synthetic import Defects, generate
from app.registry.registry import CHALLENGER, CHAMPION, REJECTED, Registry
from tests.configs import make_config
from tests.helpers import free_port, producer_token, quick_bundle, served_entities

pytestmark = pytest.mark.integration
PORT = free_port()
CLEAN = Defects(0, 0, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from ray import serve

    from app.serving import app as serving_app

    tmp = tmp_path_factory.mktemp("rollout")
    cfg = make_config(
        tmp,
        serve={
            "http_port": PORT,
            "admin_auth": False,
            "experiment": {"name": "exp-rollout", "split": {"champion": 0.5, "challenger": 0.5}},
        },
        rollout={
            "mode": "auto",
            # the last step below 100 %: the control arm keeps gathering outcomes, so the
            # always-valid interval keeps narrowing until it decides
            "steps": [50, 75],
            "min_outcomes": 80,
            "min_minutes": 0,
            "min_requests": 50,
            "check_seconds": 1,
            "margin": 0.2,
            "latency_slack": 100.0,  # nor relative latency: a busy core slows one variant's replica
        },
        monitor={"p99_ms_alert": 60_000},  # latency is not under test on a shared 2-core machine
    )
    served_entities(cfg, tmp)  # the warehouse and the online store
    registry = Registry(cfg)
    fair = generate(30_000, seed=1, defects=CLEAN)  # enough for a fair champion
    registry.register(quick_bundle(cfg, fair, seed=1), params={}, alias=CHAMPION)
    try:
        outcomes = {"Authorization": f"Bearer {producer_token(cfg)}"}
        yield {"url": serving_app.start(cfg), "cfg": cfg, "registry": registry, "outcomes": outcomes}
    finally:
        serve.shutdown()


def drive(service, rows, *, until=None, timeout_s=300, label=None) -> list[int]:
    """Predictions for `rows` (raw features) with each outcome posted back with its receipt,
    round after round until `until(rollout status)` (one round without it); returns every
    status code seen."""
    cfg, url = service["cfg"], service["url"]
    ds = cfg.dataset
    statuses: list[int] = []
    deadline = time.monotonic() + timeout_s
    outcomes = rows[ds.label].to_numpy(int) if label is None else label
    records = rows.to_dict("records")
    while True:
        for start in range(0, len(records), 40):
            part = records[start : start + 40]
            instances = [
                {"features": {c: _plain(r[c]) for c in [*ds.features, ds.timestamp]}, "key": f"u{start + i}"}
                for i, r in enumerate(part)
            ]
            resp = requests.post(f"{url}/predict", json={"instances": instances}, timeout=60)
            statuses.append(resp.status_code)
            if resp.status_code != 200:
                continue
            for i, p in enumerate(resp.json()["predictions"]):
                body = {
                    "request_id": p["request_id"],
                    "label": int(outcomes[start + i]),
                    "feedback_token": p["feedback_token"],
                }
                sent = requests.post(f"{url}/feedback", json=body, headers=service["outcomes"], timeout=60)
                statuses.append(sent.status_code)
            if until is None:
                continue
            status = requests.get(f"{url}/experiment/rollout", timeout=60).json()
            if until(status):
                return statuses
            assert time.monotonic() < deadline, (status["status"], status.get("last_decision"))
        if until is None:
            return statuses


def _plain(value):
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value


def test_a_good_challenger_is_promoted_and_a_harmful_one_rolled_back_with_no_failed_request(service):
    registry, cfg = service["registry"], service["cfg"]
    rows = generate(400, seed=21, defects=CLEAN)
    good = registry.register(
        quick_bundle(cfg, generate(30_000, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    statuses = drive(service, rows, until=lambda s: s["challenger"] == good and s["status"] == "promoted")
    assert set(statuses) == {200}, "no failed request while the split moved"
    assert registry.alias_version(CHAMPION) == good and registry.alias_version(CHALLENGER) is None
    deadline = time.monotonic() + 30  # replicas follow the control actor within poll_interval_s
    while (
        requests.get(f"{service['url']}/experiment", timeout=30).json()["experiment"]["split"]["champion"]
        != 1
    ):
        assert time.monotonic() < deadline, "the split was not reset to 100 % champion"
        time.sleep(0.5)

    flipped = generate(30_000, seed=3, defects=CLEAN)
    flipped[cfg.dataset.label] = 1 - flipped[cfg.dataset.label]  # a model that learned the opposite
    bad = registry.register(quick_bundle(cfg, flipped, seed=3), params={}, alias=CHALLENGER)
    statuses = drive(service, rows, until=lambda s: s["challenger"] == bad and s["status"] != "running")
    status = requests.get(f"{service['url']}/experiment/rollout", timeout=30).json()
    assert status["status"] == "rolled back" and "harm" in status["last_decision"]["reason"]
    assert set(statuses) == {200}
    assert registry.alias_version(REJECTED) == bad and registry.alias_version(CHAMPION) == good
    ledger = [(e.event, e.version, e.by) for e in registry.promotion_ledger()]
    assert ("promote", good, "rollout controller") in ledger and (
        "reject",
        bad,
        "rollout controller",
    ) in ledger
    served_by_bad = registry.promotion_ledger()[-1].evidence["n"]["challenger"]
    assert 0 < served_by_bad < len(rows), "rolled back within the first round of traffic"


def test_labels_flipped_through_the_public_routes_never_move_the_champion(service):
    from app.monitoring.online import online_step

    registry, cfg = service["registry"], service["cfg"]
    champion = registry.alias_version(CHAMPION)
    requests.put(  # all traffic to the champion: the poisoned rows are what it served
        f"{service['url']}/experiment", json={"name": "exp-poison", "split": {"champion": 1.0}}, timeout=30
    ).raise_for_status()
    rows = generate(2500, seed=31, defects=CLEAN)
    truth = rows[cfg.dataset.label].to_numpy(int)
    segment = rows["country"].isin(["US", "IN"]).to_numpy()  # 41 % of users
    poisoned = np.where(segment, 1 - truth, truth)
    assert set(drive(service, rows, label=poisoned)) == {200}
    time.sleep(2)  # the monitor's flush
    step = online_step(cfg, min_rows=500, lr=1e-2, epochs=5)  # the warehouse holdout from the store
    assert step.published is None and "failed the gate" in step.reason, step.reason
    assert registry.alias_version(CHAMPION) == champion and registry.alias_version(CHALLENGER) is None
    entry = registry.promotion_ledger()[-1]
    assert (entry.event, entry.by) == ("reject", "online learning") and "beyond margin" in entry.reason
