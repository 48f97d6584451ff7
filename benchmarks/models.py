"""Benchmark: the champion chosen by `model.family: auto` against HistGradientBoosting, and
distributed gradient-boosted trees against single-process xgboost, on several data sets.

    python benchmarks/models.py --rows 50000 --tune-samples 4
    python benchmarks/models.py --datasets fair randhie     # a subset

Data sets (no download at run time; the packaged ones ship inside their PyPI wheels):
- builtin: the built-in data set (`app.data.synthetic`), `--rows` rows, its own timestamps;
- fair: statsmodels.datasets.fair (6,366 rows; label: affairs > 0);
- randhie: statsmodels.datasets.randhie (20,190 rows; label: any doctor visit, mdvis > 0);
- breast_cancer: sklearn.datasets.load_breast_cancer (569 rows).
The packaged sets have no time column: rows are shuffled with a fixed seed and given one
timestamp a minute apart, so the project's time split is a random split. Each set goes the
user's way (README "Bringing your own data set"): a config `dataset` section, ETL, features,
the point-in-time training set, then `search` (every family, the verdict saved) and
`train_and_register` (the verdict's family, distributed), as `mlsys pipeline` does.

Per data set: holdout AUC of the champion against the HGB baseline `mlsys evaluate` reports
(same split, same run); wall time of the search per family; the winner's trees trained with
XGBoostTrainer on 1 and 2 workers against single-process xgboost (1 and 2 threads) on the same
rows and settings. On the built-in data also: in-process Predictor throughput of a gbdt and an
mlp bundle (rows/s at batch 1 and 1,000). Writes benchmarks/results/models.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def packaged(name: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(frame with a 0/1 "label", numeric columns, categorical columns) of a packaged data set."""
    if name == "fair":
        from statsmodels.datasets import fair

        df = fair.load_pandas().data
        df["label"] = (df.pop("affairs") > 0).astype(int)
        for col in ("occupation", "occupation_husb"):  # codes of occupation groups, not quantities
            df[col] = df[col].astype(int).astype(str)
        return (
            df,
            ["rate_marriage", "age", "yrs_married", "children", "religious", "educ"],
            [
                "occupation",
                "occupation_husb",
            ],
        )
    if name == "randhie":
        from statsmodels.datasets import randhie

        df = randhie.load_pandas().data
        df["label"] = (df.pop("mdvis") > 0).astype(int)
        return df, [c for c in df.columns if c != "label"], []
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        df = load_breast_cancer(as_frame=True).frame
        df.columns = [c.replace(" ", "_") for c in df.columns]
        df["label"] = df.pop("target").astype(int)
        return df, [c for c in df.columns if c != "label"], []
    raise ValueError(f"unknown data set {name!r}")


def configure(name: str, work: Path, rows: int, tune_samples: int):
    """Raw input written under `work` and the config that names its columns."""
    from app.config import load_config, parse_config
    from app.data.synthetic import generate_chunks, write_dataset

    base = {"storage": {"root": str(work / "store")}, "ray": {"num_cpus": 8, "include_dashboard": False}}
    tuning = {"tune": {"num_samples": tune_samples, "max_concurrent": 2}, "model": {"family": "auto"}}
    if name == "builtin":
        write_dataset(generate_chunks(rows, seed=0), work / "raw")
        data = load_config(ROOT / "deployments/config/local.yaml").model_dump(mode="json")
        data.update(base)
        data["dataset"]["source"] = str(work / "raw")
        data.update(tuning)
        return parse_config(data, environ={})
    df, numeric, categorical = packaged(name)
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)  # row order -> a random split
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    df.insert(1, "event_time", pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(df.index, "min"))
    df.to_parquet(work / "raw.parquet", index=False)
    data = {
        **base,
        **tuning,
        "dataset": {
            "source": str(work / "raw.parquet"),
            "entity": "row_id",
            "timestamp": "event_time",
            "label": "label",
            "numeric": numeric,
            "categorical": categorical,
        },
        "features": {"time": [], "ttl_days": 3650},
        "model": {**tuning["model"], "min_rows": 50},
        "mlp": {"num_workers": 2},
    }
    return parse_config(data, environ={})


def gbdt_timings(cfg, splits, overrides: dict) -> dict:
    """The same trees (settings, rows, early stopping) on XGBoostTrainer with 1 and 2 workers
    and in one process with 1 and 2 threads: total wall time and boosting time."""
    from app.model.trees import TreeSpec
    from app.training.fit import make_preprocessor
    from app.training.gbdt import arrays_dmatrix, boost, frame_arrays, gbdt_hyperparameters
    from app.training.train_gbdt import RAY_TRAIN, train_gbdt

    pre = make_preprocessor(cfg, splits.train)
    hp = {**gbdt_hyperparameters(cfg), **overrides}
    out: dict = {}
    for workers in (1, 2):
        started = time.perf_counter()
        run = train_gbdt(
            cfg, splits.train, splits.valid, pre, overrides=overrides, num_workers=workers, trainer=RAY_TRAIN
        )
        out[f"ray_{workers}w_s"] = time.perf_counter() - started
        out[f"ray_{workers}w_boost_s"] = run.boost_seconds
        out[f"ray_{workers}w_rounds"] = run.spec.rounds
        out[f"ray_{workers}w_val_loss"] = run.best_val_loss
    spec = TreeSpec.for_preprocessor(pre)
    label = cfg.dataset.label
    for threads in (1, 2):
        started = time.perf_counter()
        dtrain = arrays_dmatrix(frame_arrays(splits.train, pre, label), spec)
        dvalid = arrays_dmatrix(frame_arrays(splits.valid, pre, label), spec)
        boost_started = time.perf_counter()
        single = boost(hp, dtrain, dvalid, nthread=threads)
        out[f"single_{threads}t_s"] = time.perf_counter() - started
        out[f"single_{threads}t_boost_s"] = time.perf_counter() - boost_started
        out[f"single_{threads}t_rounds"] = single.booster.num_boosted_rounds()
        out[f"single_{threads}t_val_loss"] = single.best_val_loss
    return out


def predictor_throughput(cfg, splits, champion_family: str, champion) -> dict:
    """Rows/s of Predictor.predict_proba for a bundle of each family, batch 1 and 1,000 (in process)."""
    from app.model.predictor import Predictor
    from app.training.fit import fit_candidate

    other = "mlp" if champion_family == "gbdt" else "gbdt"
    bundles = {champion_family: champion, other: fit_candidate(cfg, splits, family=other)}
    rows = splits.holdout.head(1000)
    out = {}
    for family, bundle in bundles.items():
        predictor = Predictor.from_bundle(bundle)
        for batch, repeats in ((1, 300), (1000, 20)):
            frame = rows.head(batch)
            predictor.predict_proba(frame)  # warm
            started = time.perf_counter()
            for _ in range(repeats):
                predictor.predict_proba(frame)
            out[f"{family}_batch{batch}_rows_per_s"] = batch * repeats / (time.perf_counter() - started)
    return out


def run(name: str, args) -> dict:
    import ray

    from app.cluster.connection import WORKER_ENV, connect
    from app.data.etl import run_etl
    from app.features.store import FeatureClient
    from app.pipeline import search, train_and_register
    from app.registry.registry import Registry
    from app.training.dataset import build_splits

    work = Path(tempfile.mkdtemp(prefix=f"mlsys-models-{name}-"))
    cfg = configure(name, work, args.rows, args.tune_samples)
    # A cluster of its own, never one a `ray start` left running on this machine.
    ray.init(
        address="local",
        num_cpus=cfg.ray.num_cpus,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": WORKER_ENV},
    )
    connect(cfg.ray)  # already initialised: a no-op, as in every library call below
    ray.data.DataContext.get_current().enable_progress_bars = False
    run_etl(cfg, None)
    FeatureClient(cfg).apply()
    splits = build_splits(cfg)
    started = time.perf_counter()
    found = search(cfg, splits, num_samples=args.tune_samples)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    outcome = train_and_register(cfg, splits=splits)  # auto: the verdict's family, distributed
    train_s = time.perf_counter() - started
    result = {
        "dataset": name,
        "rows": f"{len(splits.train)}/{len(splits.valid)}/{len(splits.holdout)}",
        "family": outcome.family,
        "val_loss": {f: b["val_loss"] for f, b in found.choice.best.items()},
        "champion_auc": outcome.metrics["holdout"]["auc"],
        "hgb_auc": outcome.metrics["baseline_hgb"]["auc"],
        "search_s": search_s,
        "search_family_s": found.seconds,
        "train_register_s": train_s,
        **gbdt_timings(cfg, splits, found.choice.best["gbdt"]["overrides"]),
    }
    if name == "builtin":
        champion = Registry(cfg).load(outcome.version)
        result.update(predictor_throughput(cfg, splits, outcome.family, champion))
    ray.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the built-in data set")
    parser.add_argument("--tune-samples", type=int, default=4)
    parser.add_argument("--datasets", nargs="+", default=["builtin", "fair", "randhie", "breast_cancer"])
    args = parser.parse_args()
    results = [run(name, args) for name in args.datasets]

    print(
        "\n| data set | rows train/valid/holdout | val log loss mlp / gbdt | champion (auto) | holdout AUC | HGB AUC (same run) | champion − HGB |"
    )
    print("|---|---|---|---|---:|---:|---:|")
    for r in results:
        losses = " / ".join(f"{r['val_loss'].get(f, float('nan')):.4f}" for f in ("mlp", "gbdt"))
        print(
            f"| {r['dataset']} | {r['rows']} | {losses} | {r['family']} | {r['champion_auc']:.4f} | "
            f"{r['hgb_auc']:.4f} | {r['champion_auc'] - r['hgb_auc']:+.4f} |"
        )
    print(
        "\n| data set | search s (mlp / gbdt / forest) | train+register s | XGBoostTrainer 1 worker s (boosting) | 2 workers s (boosting) | single process 1 thread s (boosting) | 2 threads s (boosting) | rounds 1w / 2w / single |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        fam = r["search_family_s"]
        print(
            f"| {r['dataset']} | {r['search_s']:.0f} ({fam.get('mlp', 0):.0f} / {fam.get('gbdt', 0):.0f} / {fam.get('forest', 0):.0f}) | "
            f"{r['train_register_s']:.0f} | {r['ray_1w_s']:.1f} ({r['ray_1w_boost_s']:.2f}) | "
            f"{r['ray_2w_s']:.1f} ({r['ray_2w_boost_s']:.2f}) | {r['single_1t_s']:.2f} ({r['single_1t_boost_s']:.2f}) | "
            f"{r['single_2t_s']:.2f} ({r['single_2t_boost_s']:.2f}) | "
            f"{r['ray_1w_rounds']} / {r['ray_2w_rounds']} / {r['single_1t_rounds']} |"
        )
    for r in results:
        if "gbdt_batch1_rows_per_s" in r:
            print("\n| Predictor.predict_proba, in process | batch 1 rows/s | batch 1,000 rows/s |")
            print("|---|---:|---:|")
            for family in ("gbdt", "mlp"):
                print(
                    f"| {family} bundle ({r['dataset']}) | {r[f'{family}_batch1_rows_per_s']:,.0f} | "
                    f"{r[f'{family}_batch1000_rows_per_s']:,.0f} |"
                )
    out = ROOT / "benchmarks" / "results" / "models.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
