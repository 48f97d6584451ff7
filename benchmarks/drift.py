"""Benchmark: the drift monitor's math and ingest, against straightforward baselines, one run.

    python benchmarks/drift.py --rows 1000000 --features 20 --ingest 2000000

1. PSI + KS for `--features` numeric features over a `--rows` window: the monitor's way (counts on
   the reference bins, added batch by batch, then the report) against recomputing from the raw
   rows with numpy (PSI on the same deciles) and scipy's exact `ks_2samp`. PSI must agree to 1e-9;
   the KS statistics' largest difference is printed (the monitor evaluates on a percentile grid).
2. Ingest: records/s through the monitor's windowing and counting (`DriftMonitor.ingest`'s work,
   without the parquet writes) in batches of 2,000 as replicas send them, and the process RSS
   over `--ingest` records (bounded memory: it should stay flat).
Writes benchmarks/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.model.profile import reference_profile  # noqa: E402
from app.monitoring.drift import FLOOR, DriftWindow  # noqa: E402
from app.monitoring.traffic import ExperimentCounts  # noqa: E402


def raw_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r, c = np.maximum(r, FLOOR), np.maximum(c, FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def math_benchmark(rows: int, n_features: int) -> dict:
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(n_features)]
    ref = pd.DataFrame({n: rng.normal(0, 1, 200_000) for n in names})
    cur = pd.DataFrame({n: rng.normal(0.1 * (i % 3), 1 + 0.05 * (i % 2), rows) for i, n in enumerate(names)})
    profile = reference_profile(ref, names, [])

    t0 = time.perf_counter()
    window = DriftWindow(profile)
    for start in range(0, rows, 50_000):
        window.add(cur.iloc[start : start + 50_000])
    report = window.report(psi_alert=0.2)
    monitor_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    baseline = {
        n: (raw_psi(ref[n].to_numpy(), cur[n].to_numpy()), stats.ks_2samp(ref[n], cur[n]).statistic)
        for n in names
    }
    baseline_s = time.perf_counter() - t0

    psi_diff = max(abs(report["features"][n]["psi"] - baseline[n][0]) for n in names)
    ks_diff = max(abs(report["features"][n]["statistic"] - baseline[n][1]) for n in names)
    return {
        "rows": rows,
        "features": n_features,
        "monitor_s": monitor_s,
        "baseline_s": baseline_s,
        "max_psi_difference": psi_diff,
        "max_ks_difference": ks_diff,
    }


def ingest_benchmark(total: int) -> dict:
    rng = np.random.default_rng(1)
    cats = np.array(["US", "GB", "DE", "FR", "IN"])
    ref = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 50_000).astype(float),
            "income": rng.lognormal(10, 0.5, 50_000),
            "country": rng.choice(cats, 50_000),
        }
    )
    profile = reference_profile(ref, ["age", "income"], ["country"])
    counts, window, size = ExperimentCounts(), DriftWindow(profile), 5000
    batch_n = 2000
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0, done, rss_mid = time.perf_counter(), 0, None
    while done < total:
        batch = [
            {
                "request_id": uuid.uuid4().hex,
                "experiment": "e",
                "variant": "champion",
                "model_version": 1,
                "pred_score": 0.5,
                "pred_label": 1,
                "latency_ms": 3.0,
                "status": "ok",
                "age": float(a),
                "income": float(i),
                "country": c,
            }
            for a, i, c in zip(
                rng.integers(18, 80, batch_n),
                rng.lognormal(10, 0.5, batch_n),
                rng.choice(cats, batch_n),
                strict=True,
            )
        ]
        new = [r for r in batch if counts.add_prediction(r)]
        window.add(pd.DataFrame.from_records(new))
        if window.n >= size:
            window = DriftWindow(profile)
        done += batch_n
        if rss_mid is None and done >= total // 2:
            rss_mid = proc.memory_info().rss
    seconds = time.perf_counter() - t0
    rss_end = proc.memory_info().rss
    return {
        "records": total,
        "records_per_s": total / seconds,
        "rss_start_mb": rss0 / 2**20,
        "rss_half_mb": rss_mid / 2**20,
        "rss_end_mb": rss_end / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--ingest", type=int, default=2_000_000)
    args = parser.parse_args()
    m = math_benchmark(args.rows, args.features)
    print(
        f"PSI + KS, {m['features']} features x {m['rows']:,} rows: monitor {m['monitor_s']:.2f} s, "
        f"numpy/scipy from raw rows {m['baseline_s']:.2f} s ({m['baseline_s'] / m['monitor_s']:.1f}x); "
        f"max |PSI difference| {m['max_psi_difference']:.2e}, max |KS difference| {m['max_ks_difference']:.4f}"
    )
    g = ingest_benchmark(args.ingest)
    print(
        f"ingest: {g['records_per_s']:,.0f} records/s over {g['records']:,} records; RSS "
        f"{g['rss_start_mb']:.0f} MB at start, {g['rss_half_mb']:.0f} MB halfway, {g['rss_end_mb']:.0f} MB at the end"
    )
    out = ROOT / "benchmarks" / "results" / "drift.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"math": m, "ingest": g}, indent=1))


if __name__ == "__main__":
    main()
