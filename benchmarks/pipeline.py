"""Benchmark: `mlsys pipeline` (no search) end to end at several sizes, per stage, one run.

    python benchmarks/pipeline.py --rows 30000 300000

For each size: the built-in generator writes the raw data, then `mlsys pipeline` runs in a
fresh process on a fresh storage root (local Ray cluster start included) and its stage times
are read from its output. The baseline, on the same raw file in one process: what pandas and
scikit-learn do with it (read, drop duplicates and bad labels, derive the same features with
`add_features`, a time split, HistGradientBoosting fit and holdout AUC).
Writes benchmarks/results/pipeline.json (sizes measured earlier are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def env(work: Path) -> dict:
    return {
        **os.environ,
        "MLSYS_STORAGE__ROOT": str(work / "store"),
        "MLSYS_DATASET__SOURCE": str(work / "raw"),
        "MLSYS_RAY__INCLUDE_DASHBOARD": "false",
        "RAY_ADDRESS": "",
    }


def run_pipeline(work: Path) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "app", "pipeline"], env=env(work), cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"mlsys pipeline failed: {done.stderr[-2000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith('{"stages_s"'))
    return {"wall_s": wall, "stages_s": json.loads(line)["stages_s"]}


def pandas_baseline(raw: Path) -> dict:
    """The same data through pandas + scikit-learn in this process."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from app.config import load_config
    from app.features.transforms import add_features, feature_spec

    cfg = load_config()
    ds = cfg.dataset
    t0 = time.perf_counter()
    frame = pd.read_parquet(raw).drop_duplicates()
    if ds.label_map:
        frame[ds.label] = frame[ds.label].map(ds.label_map)
    frame = frame[frame[ds.label].isin([0, 1])].copy()
    frame[ds.label] = frame[ds.label].astype(int)
    frame[ds.timestamp] = pd.to_datetime(frame[ds.timestamp], utc=True, errors="coerce", format="mixed")
    frame = frame.dropna(subset=[ds.timestamp])
    for c in ds.numeric:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    frame = add_features(frame.sort_values(ds.timestamp), cfg)
    spec = feature_spec(cfg)
    x = frame[spec.names].copy()
    for c in spec.categorical:
        x[c] = x[c].astype("category")
    cut = int(len(frame) * 0.8)
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(x.iloc[:cut], frame[ds.label].iloc[:cut])
    auc = roc_auc_score(frame[ds.label].iloc[cut:], model.predict_proba(x.iloc[cut:])[:, 1])
    return {"wall_s": time.perf_counter() - t0, "auc": float(auc)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[30_000])
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "pipeline")
    args = parser.parse_args()
    results = {}
    for rows in args.rows:
        work = args.work / str(rows)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "data",
                "generate",
                "--rows",
                str(rows),
                "--out",
                str(work / "raw"),
            ],
            env=env(work),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        mlsys = run_pipeline(work)
        base = pandas_baseline(work / "raw")
        results[rows] = {"mlsys": mlsys, "pandas_sklearn": base}
        stages = ", ".join(f"{k} {v:.1f}" for k, v in mlsys["stages_s"].items())
        print(
            f"{rows:>10,} rows: mlsys pipeline {mlsys['wall_s']:.1f} s wall ({stages}); "
            f"pandas + scikit-learn {base['wall_s']:.1f} s (AUC {base['auc']:.3f}); "
            f"{mlsys['wall_s'] / base['wall_s']:.0f}x"
        )
    out = ROOT / "benchmarks" / "results" / "pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(out.read_text()) if out.exists() else {}  # other sizes, from earlier runs
    out.write_text(json.dumps({**earlier, **{str(k): v for k, v in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
