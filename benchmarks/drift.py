"""Benchmark: the drift monitor's math and ingest, against straightforward baselines, one run.

    python benchmarks/drift.py --rows 1000000 --features 20 --ingest 2000000

1. PSI + KS for `--features` numeric features over a `--rows` window: the monitor's way (counts on
   the reference bins, added batch by batch, then the report) against recomputing from the raw
   rows with numpy (PSI on the same deciles) and scipy's exact `ks_2samp`. PSI must agree to 1e-9;
   the KS statistics' largest difference is printed (the monitor evaluates on a percentile grid).
   Then Evidently (0.7, the `bench` extra): a Report of `ValueDrift(column, method="psi")` per
   feature on the same frames and the same decile bins (its PSI must agree to 1e-9), timed with
   the binning it needs; its bare `psi_stat_test` on those bins; and, for reference, the Report on
   the raw numeric columns, where Evidently picks its own bins (so its PSI differs). And the
   counting step alone: the monitor's lookup table against numpy's binary search.
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
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Importing Evidently trips deprecation warnings in its own code and its dependencies (numpy.core,
# litestar), shown under `-W default`; not ours to fix, so they are silenced at their source.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(evidently|litestar)\.")

from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently import __version__ as evidently_version  # noqa: E402
from evidently.legacy.calculations.stattests import psi_stat_test  # noqa: E402
from evidently.legacy.core import ColumnType  # noqa: E402
from evidently.metrics import ValueDrift  # noqa: E402

from app.model.profile import reference_profile  # noqa: E402
from app.monitoring.counts import ExperimentCounts  # noqa: E402
from app.monitoring.drift import FLOOR, DriftWindow, NumericWindow  # noqa: E402
from app.monitoring.drift_tracker import DriftTracker  # noqa: E402
from app.monitoring.records import TrafficRecord  # noqa: E402


def raw_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r, c = np.maximum(r, FLOOR), np.maximum(c, FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


# Evidently 0.7 bins a numeric column with over 20 distinct values on Sturges' equal-width bins
# over reference + current together (`get_binned_data`: no quantile option; its `n_bins` is unused
# there and `ValueDrift(nbinsx=)` only sizes the plotted histogram), so for the monitor's bins each
# value is replaced by the index of its reference decile bin (the profile's edges, `side="right"`
# as in the monitor) and the column declared categorical: Evidently then takes each index's share
# of the rows. Its PSI is `sum((ref - cur) * ln(ref / cur))`, the same sum; but it floors only
# empty bins (at 0.0001, or at the smallest non-zero share / 1e6 when that share is <= 0.0001) and
# leaves out bins empty on both sides, where the monitor floors every share at 0.0001. The two
# agree exactly when every bin holds at least 0.0001 of the rows on both sides, as here (deciles
# of a 200k-row reference, mildly shifted normals).
def decile_codes(frame: pd.DataFrame, edges: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({n: np.searchsorted(edges[n], frame[n].to_numpy(), side="right") for n in edges})


def evidently_report_psi(ref: pd.DataFrame, cur: pd.DataFrame, edges: dict | None) -> dict[str, float]:
    """PSI per column from an Evidently Report; on the decile bins of `edges`, or Evidently's own."""
    if edges is None:
        definition = DataDefinition(numerical_columns=list(ref.columns))
    else:
        ref, cur = decile_codes(ref, edges), decile_codes(cur, edges)
        definition = DataDefinition(categorical_columns=list(ref.columns))
    report = Report([ValueDrift(column=n, method="psi") for n in ref.columns])
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    return {m["config"]["column"]: float(m["value"]) for m in snapshot.dict()["metrics"]}


def evidently_stattest_psi(ref: pd.DataFrame, cur: pd.DataFrame, edges: dict) -> dict[str, float]:
    ref, cur = decile_codes(ref, edges), decile_codes(cur, edges)
    return {n: float(psi_stat_test(ref[n], cur[n], ColumnType.Categorical, 0.2).drift_score) for n in edges}


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

    edges = {n: np.asarray(profile["numeric"][n]["edges"]) for n in names}
    t0 = time.perf_counter()
    evidently = evidently_report_psi(ref, cur, edges)
    evidently_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evidently_bare = evidently_stattest_psi(ref, cur, edges)
    evidently_stattest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evidently_own = evidently_report_psi(ref, cur, None)
    evidently_own_bins_s = time.perf_counter() - t0

    def max_diff(other: dict[str, float]) -> float:
        return max(abs(report["features"][n]["psi"] - other[n]) for n in names)

    # The counting step alone, both ways, in the same 50k-row batches: numpy's binary search on
    # the decile edges and on the percentile grid, against the monitor's lookup table over their
    # union.
    batches = [{n: cur[n].to_numpy()[s : s + 50_000] for n in names} for s in range(0, rows, 50_000)]
    t0 = time.perf_counter()
    for batch in batches:
        for n in names:
            for e in (profile["numeric"][n]["edges"], profile["numeric"][n]["cdf_edges"]):
                np.bincount(np.searchsorted(e, batch[n], side="right"), minlength=len(e) + 1)
    searchsorted_s = time.perf_counter() - t0
    counters = {n: NumericWindow(profile["numeric"][n]).counter for n in names}  # the monitor's own
    t0 = time.perf_counter()
    for batch in batches:
        for n in names:
            counters[n].counts(batch[n])
    table_s = time.perf_counter() - t0

    psi_diff = max(abs(report["features"][n]["psi"] - baseline[n][0]) for n in names)
    ks_diff = max(abs(report["features"][n]["statistic"] - baseline[n][1]) for n in names)
    return {
        "rows": rows,
        "features": n_features,
        "monitor_s": monitor_s,
        "count_searchsorted_s": searchsorted_s,
        "count_table_s": table_s,
        "baseline_s": baseline_s,
        "max_psi_difference": psi_diff,
        "max_ks_difference": ks_diff,
        "evidently_version": evidently_version,
        "evidently_s": evidently_s,
        "speedup_vs_evidently": evidently_s / monitor_s,
        "max_psi_difference_evidently": max_diff(evidently),
        "evidently_stattest_s": evidently_stattest_s,
        "max_psi_difference_evidently_stattest": max_diff(evidently_bare),
        "evidently_own_bins_s": evidently_own_bins_s,
        "max_psi_difference_evidently_own_bins": max_diff(evidently_own),
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
    # The monitor's ingest path: the replica's record flattened, counted, then windowed.
    counts, tracker = ExperimentCounts(), DriftTracker(window=5000, psi_alert=0.2)
    tracker.follow(1, profile)
    batch_n = 2000
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0, done, rss_mid = time.perf_counter(), 0, None
    while done < total:
        batch = [
            TrafficRecord(
                request_id=uuid.uuid4().hex,
                experiment="e",
                variant="champion",
                model_version=1,
                key="k",
                score=0.5,
                label=1,
                latency_ms=3.0,
                features={"age": float(a), "income": float(i), "country": c},
            ).row()
            for a, i, c in zip(
                rng.integers(18, 80, batch_n),
                rng.lognormal(10, 0.5, batch_n),
                rng.choice(cats, batch_n),
                strict=True,
            )
        ]
        tracker.add([r for r in batch if counts.add_prediction(r)])
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
    print(
        f"counting alone: the monitor's lookup table {m['count_table_s']:.3f} s, numpy's binary search on the "
        f"same edges {m['count_searchsorted_s']:.3f} s ({m['count_searchsorted_s'] / m['count_table_s']:.1f}x)"
    )
    print(
        f"Evidently {m['evidently_version']} PSI on the same decile bins, Report of ValueDrift(method='psi'): "
        f"{m['evidently_s']:.2f} s ({m['speedup_vs_evidently']:.1f}x the monitor), "
        f"max |PSI difference| {m['max_psi_difference_evidently']:.2e}; its psi_stat_test alone "
        f"{m['evidently_stattest_s']:.2f} s, max |PSI difference| {m['max_psi_difference_evidently_stattest']:.2e}"
    )
    print(
        f"Evidently Report on the raw columns (its own equal-width bins): {m['evidently_own_bins_s']:.2f} s "
        f"({m['evidently_own_bins_s'] / m['monitor_s']:.1f}x the monitor), "
        f"max |PSI difference| {m['max_psi_difference_evidently_own_bins']:.2e} (other bins)"
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
