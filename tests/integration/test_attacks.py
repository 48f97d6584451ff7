"""The attacks a caller without credentials could try, through the public HTTP routes of a real
Serve app with the default settings (a challenger rolling out automatically at its first step):
none moves the rollout, the champion or the number of retrain jobs.

- flipped outcomes posted anonymously, with the admin token or with a bare receipt;
- large batches keyed to the challenger, to make it look slow to the latency guardrail;
- one client key posting outcomes for hundreds of its own predictions, to outvote the rest;
- one burst of shifted rows, two drift windows within seconds, to start a retrain job.

The rollout's `check_seconds` is 1 (it looks more often than by default: more chances for an
attack to move it, never fewer).
"""

from __future__ import annotations

import time

import pytest
import requests

from app.data.synthetic import Defects, generate
from app.registry.registry import CHALLENGER, CHAMPION
from tests.configs import make_config
from tests.helpers import ab_service, free_port

pytestmark = pytest.mark.integration
PORT = free_port()
TOKEN = "attack-suite-admin-token"
CLEAN = Defects(0, 0, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    cfg = make_config(
        tmp,
        serve={"http_port": PORT},
        rollout={"mode": "auto", "check_seconds": 1},
    )
    defaults = make_config(tmp)
    assert (cfg.serve.experiment, cfg.retrain, cfg.monitor) == (
        defaults.serve.experiment,
        defaults.retrain,
        defaults.monitor,
    ), "the attacks run against the default experiment, retrain trigger and latency SLO"
    with ab_service(cfg, tmp, token=TOKEN) as service:

        def started() -> bool:
            resp = requests.get(f"{service['url']}/experiment/rollout", timeout=30)
            return resp.ok and resp.json().get("status") == "running"  # a 503 until the controller answers

        wait_for(started, "the challenger's rollout to start", timeout_s=300)
        yield service


def wait_for(condition, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def rollout(service) -> dict:
    return requests.get(f"{service['url']}/experiment/rollout", timeout=30).json()


def report(service) -> dict:
    return requests.get(f"{service['url']}/experiment/report", timeout=30).json()


def predict(service, instances: list[dict]) -> list[dict]:
    resp = requests.post(f"{service['url']}/predict", json={"instances": instances}, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


def features(cfg, n: int, *, seed: int, drift: float = 0.0) -> list[dict]:
    """`n` rows of raw features like the training data's (unless `drift`): ordinary traffic,
    which raises no drift alert of its own."""
    frame = generate(n, seed=seed, drift=drift, defects=CLEAN)
    return [{c: _plain(r[c]) for c in cfg.dataset.features} for r in frame.to_dict("records")]


def challenger_key(service) -> str:
    """A client key the split sends to the challenger (anyone can find one by trying keys)."""
    rows = features(service["cfg"], 400, seed=11)
    answers = predict(service, [{"features": r, "key": f"probe-{i}"} for i, r in enumerate(rows)])
    return next(f"probe-{i}" for i, a in enumerate(answers) if a["variant"] == CHALLENGER)


def assert_nothing_moved(service, status_before: dict) -> None:
    registry = service["registry"]
    now = rollout(service)
    assert now["status"] == "running" and now["challenger"] == status_before["challenger"], now
    assert now["share"] == status_before["share"], now  # rollout.min_minutes (5) not reached
    assert registry.alias_version(CHAMPION) == 1 and registry.alias_version(CHALLENGER) == 2


def test_outcomes_without_a_producer_credential_are_refused_and_count_nothing(service):
    before, status = report(service), rollout(service)
    rows = features(service["cfg"], 50, seed=12)
    answers = predict(service, [{"features": r, "key": f"anon-{i}"} for i, r in enumerate(rows)])
    for i, a in enumerate(answers):
        body = {"request_id": a["request_id"], "label": 1 - a["label"], "feedback_token": a["feedback_token"]}
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):  # nobody, and the admin
            sent = requests.post(f"{service['url']}/feedback", json=body, headers=headers, timeout=30)
            assert sent.status_code in (401, 403), (i, sent.status_code, sent.text)
    time.sleep(2)  # the monitor's flush
    after = report(service)
    for variant, v in after["variants"].items():
        assert v["outcomes"] == before["variants"].get(variant, {}).get("outcomes", 0), variant
    assert_nothing_moved(service, status)


def test_large_batches_keyed_to_the_challenger_do_not_make_it_look_slow(service):
    """One large batch in twenty of the challenger's requests is enough to own its p99: scoring
    10,000 rows takes longer than the 100 ms SLO, and counted as one slow request it would roll
    the challenger back."""
    cfg, status = service["cfg"], rollout(service)
    key = challenger_key(service)
    singles = features(cfg, 100, seed=13)
    big = [{"features": r, "key": key} for r in features(cfg, cfg.serve.max_instances, seed=15)]
    for i, row in enumerate(singles):  # rollout.min_requests of ordinary requests
        predict(service, [{"features": row, "key": key}])
        if i % 20 == 0:
            predict(service, big)
    wait_for(  # every request counted by the monitor ...
        lambda: report(service)["variants"][CHALLENGER]["requests_reached"] >= cfg.rollout.min_requests,
        "the monitor to count the challenger's requests",
    )
    counted_at = time.time()
    wait_for(  # ... and a decision taken on those counts (the guardrail judges from min_requests)
        lambda: (rollout(service).get("last_decision") or {}).get("at", 0) > counted_at,
        "a rollout decision on them",
    )
    last = rollout(service)["last_decision"]
    assert "latency" not in last["reason"], last
    p99 = last["evidence"]["p99_ms"]["challenger"]
    assert p99 is not None and p99 < cfg.monitor.p99_ms_alert, p99
    assert_nothing_moved(service, status)


def test_one_key_cannot_outvote_the_rest_with_its_own_outcomes(service):
    cfg, status = service["cfg"], rollout(service)
    key = challenger_key(service)
    before = report(service)["variants"][CHALLENGER]
    rows = features(cfg, 150, seed=14)
    answers = [predict(service, [{"features": r, "key": key}])[0] for r in rows]
    assert {a["variant"] for a in answers} == {CHALLENGER}, rollout(service)["last_decision"]  # sticky key
    for a in answers:  # a producer reporting, for one key, every outcome as a success
        body = {"request_id": a["request_id"], "label": a["label"], "feedback_token": a["feedback_token"]}
        sent = requests.post(f"{service['url']}/feedback", json=body, headers=service["outcomes"], timeout=30)
        assert sent.status_code == 200, sent.text

    def seen() -> tuple[int, int]:  # (counted, left out by the cap) since `before`
        after = report(service)["variants"][CHALLENGER]
        capped = after["capped"].get("key", 0) - before.get("capped", {}).get("key", 0)
        return after["outcomes"] - before["outcomes"], capped

    wait_for(lambda: sum(seen()) == len(answers), "every outcome counted or capped")
    counted, capped = seen()
    assert counted <= cfg.rollout.max_outcomes_per_key and capped >= len(answers) - counted
    assert_nothing_moved(service, status)


def test_a_burst_of_shifted_rows_starts_no_retrain_job(service):
    cfg, status = service["cfg"], rollout(service)
    rows = features(cfg, 2 * cfg.monitor.window + 500, seed=41, drift=1.0)
    for start in range(0, len(rows), 2500):  # two complete drift windows within seconds
        predict(service, [{"features": r} for r in rows[start : start + 2500]])

    def drift_judged() -> dict | None:
        drift = requests.get(f"{service['url']}/monitor/drift", timeout=30).json()
        judged = [d for d in drift["retrain"]["decisions"] if "window(s)" in d["reason"]]
        return drift if judged else None

    wait_for(drift_judged, "the retrain controller to judge the drift", timeout_s=180)
    drift = drift_judged()
    assert drift["alert"], "the burst did drift"
    assert drift["retrain"]["submitted"] == [], drift["retrain"]
    assert all(d["trigger"] != "drift" for d in drift["retrain"]["decisions"]), drift["retrain"]
    judged = [d["reason"] for d in drift["retrain"]["decisions"] if "window(s)" in d["reason"]]
    assert f"at least {cfg.retrain.drift_minutes:g} min" in judged[-1], judged
    assert_nothing_moved(service, status)


def _plain(value):
    if isinstance(value, float) and value != value:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value
