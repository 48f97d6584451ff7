"""Benchmark: time from the onset of concept drift to a promoted fix, with outcomes delayed.

    python benchmarks/concept_drift.py --lag 30

A fresh storage and a local cluster run the loop as `mlsys demo` sets it up (app/demo.py:
pipeline on the warehouse, serving, the monitor, the retrain job on production rows, the
automatic rollout). After `--traffic` requests like the warehouse's, the traffic
changes (the built-in generator's `concept` 1: every feature's effect on the label reversed,
the features drawn as before) at `--rate` requests a second; each outcome is
reported `--lag` seconds after its prediction, as a system of record would report it later.
The clock starts at the first request of the changed world and the script prints when the
labelled windows decayed, when the monitor submitted the retrain, when the retrained model
became the challenger and when the rollout promoted it. The same run's baseline is what input
drift alone saw meanwhile: the largest PSI of the champion's windows against `psi_alert`.
Writes benchmarks/results/concept_drift.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 50  # requests per /predict call


def lagged_replay(client, cfg, rows, *, rate: float, lag: float, pending: deque) -> None:
    """Predict `rows` at `rate` requests a second; queue each outcome to be reported `lag`
    seconds later, and report the ones due meanwhile."""
    ds = cfg.dataset
    for start in range(0, len(rows), BATCH):
        part = rows.iloc[start : start + BATCH]
        began = time.monotonic()
        instances = [
            {"features": {c: _plain(r[c]) for c in [*ds.features, ds.timestamp]}, "key": str(r[ds.entity])}
            for r in part.to_dict("records")
        ]
        answers = client._call("POST", "/predict", {"instances": instances})["predictions"]
        due = time.monotonic() + lag
        pending.extend((due, a, int(y)) for a, y in zip(answers, part[ds.label], strict=True))
        report_due(client, pending)
        time.sleep(max(0.0, len(part) / rate - (time.monotonic() - began)))


def report_due(client, pending: deque) -> None:
    while pending and pending[0][0] <= time.monotonic():
        _, answer, label = pending.popleft()
        client.feedback(answer, label)


def _plain(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def run(args) -> dict:
    from app.cluster.connection import connect
    from app.config import load_config
    from app.data.synthetic import generate_chunks, write_dataset
    from app.demo import demo_config
    from app.demo_steps import traffic_rows
    from app.monitoring.messages import DriftReport
    from app.pipeline import run_pipeline
    from app.registry.registry import CHALLENGER, CHAMPION, Registry
    from app.serving import app as serving_app
    from app.serving.client import ServiceClient
    from app.serving.producers import producer_store

    base = load_config(ROOT / "deployments/config/local.yaml").model_copy(deep=True)
    storage = base.storage.model_copy(update={"root": args.root})
    cfg = demo_config(base.model_copy(update={"storage": storage}), args.traffic)
    connect(cfg.ray)
    write_dataset(generate_chunks(args.rows, seed=0), cfg.storage.raw)
    warehouse = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"data": "warehouse"})})
    run_pipeline(warehouse, source=str(cfg.storage.raw), tune_samples=0)
    client = ServiceClient(serving_app.start(cfg), outcomes_token=producer_store(cfg).token_for("bench"))
    registry = Registry(cfg)
    champion = registry.alias_version(CHAMPION)
    before, after = 0.0, 1.0  # the warehouse's world, then every effect reversed
    pending: deque = deque()
    lagged_replay(
        client, cfg, traffic_rows(args.traffic, seed=101, concept=before, first_user=5_000_000),
        rate=args.rate, lag=args.lag, pending=pending,
    )  # fmt: skip
    onset = time.monotonic()
    marks: dict[str, float] = {}
    max_psi = 0.0
    for round_ in range(args.max_rounds):
        rows = traffic_rows(args.traffic, seed=300 + round_, concept=after, first_user=9_000_000)
        lagged_replay(client, cfg, rows, rate=args.rate, lag=args.lag, pending=pending)
        drift = DriftReport.model_validate(client.drift())
        window = drift.variants.get(CHAMPION)
        if window is not None and window.window == "complete" and window.max_psi is not None:
            max_psi = max(max_psi, window.max_psi)
        at = time.monotonic() - onset
        if drift.performance_alert:
            marks.setdefault("labelled windows decayed", at)
        if drift.retrain.submitted:
            marks.setdefault("retrain submitted", at)
        challenger = registry.alias_version(CHALLENGER)
        if challenger is not None and challenger > champion:
            marks.setdefault(f"retrained v{challenger} is the challenger", at)
        now_champion = registry.alias_version(CHAMPION)
        if now_champion != champion:
            marks["promoted"] = at
            break
    return {
        "lag_s": args.lag,
        "rate": args.rate,
        "seconds_from_onset": marks,
        "promoted": "promoted" in marks,
        "baseline_max_psi": max_psi,
        "psi_alert": cfg.monitor.psi_alert,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lag", type=float, default=30.0, help="seconds from a prediction to its outcome")
    parser.add_argument("--rate", type=float, default=50.0, help="requests a second")
    parser.add_argument("--traffic", type=int, default=1000, help="requests per round")
    parser.add_argument("--rows", type=int, default=12_000, help="warehouse rows")
    parser.add_argument("--max-rounds", type=int, default=30)
    args = parser.parse_args()
    from app.demo import stop_demo

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as root:
        args.root = root
        try:
            result = run(args)
        finally:
            stop_demo()
    print(f"outcomes {args.lag:g} s after their predictions, {args.rate:g} requests/s")
    for what, at in result["seconds_from_onset"].items():
        print(f"  {at:7.1f} s after the onset: {what}")
    if not result["promoted"]:
        print(f"  no promotion within {args.max_rounds} rounds of {args.traffic} requests")
    print(
        f"baseline, input drift alone: largest PSI of the champion's windows {result['baseline_max_psi']:.3f}"
        f" (alert over {result['psi_alert']:g}): {'alerted' if result['baseline_max_psi'] > result['psi_alert'] else 'no alert'}"
    )  # fmt: skip
    print(f"{time.monotonic() - started:.0f} s")
    out = ROOT / "benchmarks/results/concept_drift.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
