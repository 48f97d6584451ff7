"""Gradient-boosted trees in the driver process against Ray Train's XGBoostTrainer, same run.

For each size, the built-in generator's rows (with the local config's derived features) are
split 70/15/15 by time, the preprocessor fitted on the training split, and the same trees
(the `gbdt` section's settings, early stopping on the validation split) fitted four ways:

- xgboost called directly: `xgboost.train` on the preprocessed arrays (DMatrix build included),
  1 thread (what the in-process path uses, `gbdt.cpus_per_worker`) and 2 threads: the library
  without the project;
- `train_gbdt` in process (`gbdt.in_process_rows` above the rows): preprocessing + the above;
- `train_gbdt` on Ray Train (`in_process_rows: 0`): 2 workers x 1 thread, the data as Ray
  Datasets, XGBoost's collective, a checkpoint at the end;
- `fit_candidate` in process: the whole training stage of `mlsys train` before registration
  (trees, holdout metrics and calibration, feature importance, the HistGradientBoosting
  baseline on the same split).

Medians of `--repeats` runs, one local Ray cluster of this process's own. Usage:
    python benchmarks/gbdt_paths.py [--sizes 5000 30000 300000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_config(work: Path):
    from app.config import load_config, parse_config

    data = load_config(ROOT / "deployments/config/local.yaml").model_dump(mode="json")
    data["storage"] = {"root": str(work / "store")}
    data["ray"] = {"num_cpus": 4, "include_dashboard": False}
    data["model"]["family"] = "gbdt"
    data["gbdt"].update({"num_workers": 2, "cpus_per_worker": 1})
    return parse_config(data, environ={})


def splits_of(cfg, rows: int):
    import pandas as pd

    from app.data.synthetic import Defects, generate
    from app.features.transforms import add_features
    from app.training.dataset import time_split

    # Clean rows (no injected defects): ETL's cleaning is not what is measured here.
    raw = generate(rows, seed=0, defects=Defects(0, 0, 0, 0, 0, 0)).head(rows)
    raw["event_timestamp"] = pd.to_datetime(raw["event_timestamp"], utc=True)  # raw files hold text
    frame = add_features(raw, cfg)
    return time_split(frame, cfg)


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def one_size(cfg, rows: int, repeats: int) -> dict:
    from app.model.trees import TreeSpec
    from app.training.fit import fit_candidate, make_preprocessor
    from app.training.gbdt import arrays_dmatrix, boost, frame_arrays, gbdt_hyperparameters
    from app.training.train_gbdt import IN_PROCESS, RAY_TRAIN, train_gbdt

    splits = splits_of(cfg, rows)
    pre = make_preprocessor(cfg, splits.train)
    spec, label, hp = TreeSpec.for_preprocessor(pre), cfg.dataset.label, gbdt_hyperparameters(cfg)
    train_arrays, valid_arrays = (frame_arrays(f, pre, label) for f in (splits.train, splits.valid))

    def library(threads: int):
        dtrain, dvalid = arrays_dmatrix(train_arrays, spec), arrays_dmatrix(valid_arrays, spec)
        return boost(hp, dtrain, dvalid, nthread=threads)

    runs: dict[str, list[float]] = {k: [] for k in ("library", "library2", IN_PROCESS, RAY_TRAIN, "stage")}
    rounds: dict[str, int] = {}
    for _ in range(repeats):
        for key, threads in (("library", cfg.gbdt.cpus_per_worker), ("library2", 2)):
            seconds, lib = timed(lambda t=threads: library(t))
            runs[key].append(seconds)
            rounds[key] = lib.booster.num_boosted_rounds()
        for trainer in (IN_PROCESS, RAY_TRAIN):
            seconds, result = timed(
                lambda t=trainer: train_gbdt(cfg, splits.train, splits.valid, pre, trainer=t)
            )
            runs[trainer].append(seconds)
            rounds[trainer] = result.spec.rounds
        seconds, bundle = timed(lambda: fit_candidate(cfg, splits))
        runs["stage"].append(seconds)
        rounds["stage"] = bundle.spec.rounds
    return {
        "rows": rows,
        "train_rows": len(splits.train),
        **{k: statistics.median(v) for k, v in runs.items()},
        "rounds": rounds,
    }


def main() -> None:
    import ray

    from app.cluster.connection import WORKER_ENV

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 30_000, 300_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cfg = make_config(Path(work))
        ray.init(
            address="local",
            num_cpus=cfg.ray.num_cpus,
            include_dashboard=False,
            logging_level="ERROR",
            runtime_env={"env_vars": WORKER_ENV},
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        results = [one_size(cfg, rows, args.repeats) for rows in args.sizes]
        ray.shutdown()
    print(f"\nmedian of {args.repeats} runs, seconds; rounds kept by early stopping in brackets")
    print(
        "| rows (train) | xgboost directly, 1 thread | 2 threads | train_gbdt in process "
        "| train_gbdt on Ray Train | Ray Train / in process | training stage (fit_candidate, in process) "
        "| stage / xgboost 1 thread |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        n = r["rounds"]
        print(
            f"| {r['rows']:,} ({r['train_rows']:,}) | {r['library']:.2f} ({n['library']}) "
            f"| {r['library2']:.2f} ({n['library2']}) "
            f"| {r['in-process']:.2f} ({n['in-process']}) | {r['ray-train']:.1f} ({n['ray-train']}) "
            f"| {r['ray-train'] / r['in-process']:.0f}x | {r['stage']:.2f} | {r['stage'] / r['library']:.1f}x |"
        )


if __name__ == "__main__":
    main()
