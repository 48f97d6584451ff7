"""Benchmark: rebuilding a model's training set from the warehouse snapshot its lineage names.

A warehouse of `--rows` rows is loaded and its features built; the training set is built (as
a training run does), then `--more` rows land (the same users, later: a second ETL run and
feature build). Timed in the same process and cluster, each `--repeats` times (median):

- the training set now (`build_splits(cfg)`, the current snapshot: the baseline), and
- the training set as it was (`build_splits(cfg, snapshot_id)`), checked to be identical
  (its fingerprint equals the one recorded at the time).

    python benchmarks/lineage.py [--rows 200000] [--more 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--more", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlsys-lineage-"))
    os.environ["MLSYS_STORAGE__ROOT"] = str(work / "store")
    os.environ["MLSYS_RAY__INCLUDE_DASHBOARD"] = "false"
    from app.cluster.connection import connect
    from app.config import load_config
    from app.data.etl import run_etl
    from app.data.synthetic import generate_chunks, write_dataset
    from app.features.store import FeatureClient
    from app.training.dataset import build_splits

    cfg = load_config(ROOT / "deployments/config/local.yaml")
    connect(cfg.ray)
    write_dataset(generate_chunks(args.rows, seed=1, start="2026-01-05"), work / "a")
    write_dataset(generate_chunks(args.more, seed=2, start="2026-06-01"), work / "b")
    run_etl(cfg, str(work / "a"))
    FeatureClient(cfg).apply()
    then = build_splits(cfg)
    snapshot = int(then.lineage["warehouse_snapshot"])
    run_etl(cfg, str(work / "b"))
    FeatureClient(cfg).apply()

    now_s, now = timed(lambda: build_splits(cfg), args.repeats)
    as_of_s, again = timed(lambda: build_splits(cfg, snapshot), args.repeats)
    assert again.fingerprint() == then.fingerprint(), "the rebuilt training set differs"
    rows = lambda s: len(s.train) + len(s.valid) + len(s.holdout)  # noqa: E731
    print(f"| training set | rows | seconds (median of {args.repeats}) | rows/s |")
    print("|---|---:|---:|---:|")
    print(f"| now (current snapshot, baseline) | {rows(now):,} | {now_s:.2f} | {rows(now) / now_s:,.0f} |")
    print(
        f"| as of snapshot {snapshot} (identical: fingerprint {then.fingerprint()}) | {rows(again):,} | "
        f"{as_of_s:.2f} | {rows(again) / as_of_s:,.0f} |"
    )
    print(
        f"rebuilding from the snapshot: {as_of_s / now_s:.2f}x the time of building the current set, "
        f"{(rows(again) / as_of_s) / (rows(now) / now_s):.2f}x its rows/s"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
