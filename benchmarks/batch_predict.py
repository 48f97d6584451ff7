"""Benchmark: `mlsys predict` on Ray Data against the same Predictor in one process, one run.

    python benchmarks/batch_predict.py --rows 200000 --files 4

The built-in data set (with its defects: some rows are quarantined), `--rows` rows in
`--files` parquet files, scored by a small registered MLP (`tests.helpers.quick_bundle`).
Rows/s of, on the same rows in the same run:
- the Predictor alone, in this process, on features already derived (the model's own cost);
- this process doing what each batch of `mlsys predict` does (read, check, derive the
  features through serving's `raw_rows_to_frame`, score, request ids), with no Ray and no
  writes: the baseline;
- `mlsys predict` (`app.batch.run.predict_files`, what the command calls) with a pool of 1
  and of 2 actors: read -> check -> score -> parquet parts + quarantine + row count, on a
  local Ray cluster started once and warmed by one untimed run on one file (its start is not
  counted; loading the model from the registry and starting the actors are).
Writes benchmarks/results/batch_predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the command sets it
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from app.batch.inputs import input_files, layout_of  # noqa: E402
from app.batch.run import predict_files  # noqa: E402
from app.batch.scoring import score_batch, split  # noqa: E402
from app.cluster.connection import connect  # noqa: E402
from app.config import parse_config  # noqa: E402
from app.data.synthetic import Defects, generate  # noqa: E402
from app.features.transforms import add_features  # noqa: E402
from app.model.predictor import Predictor  # noqa: E402
from app.registry.registry import CHAMPION, Registry  # noqa: E402
from tests.helpers import quick_bundle  # noqa: E402


def in_process(paths: list[str], cfg, predictor: Predictor, batch_size: int) -> tuple[float, int]:
    """Seconds and scored rows of the pipeline's per-batch work in this one process."""
    layout = layout_of(paths, cfg.dataset, ())
    now, scored = datetime.now(timezone.utc), 0
    t0 = time.perf_counter()
    for path in paths:
        frame = pd.read_parquet(path)
        for start in range(0, len(frame), batch_size):
            table = score_batch(frame.iloc[start : start + batch_size], predictor, cfg, layout, now=now)
            scored += split(table, layout)[0].num_rows
    return time.perf_counter() - t0, scored


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=50_000)
    args = parser.parse_args()
    data = yaml.safe_load((ROOT / "deployments" / "config" / "local.yaml").read_text())
    data["storage"] = {"root": str(tmp / "store")}
    data.setdefault("ray", {})["include_dashboard"] = False
    cfg = parse_config(data, environ={})

    rows = generate(args.rows, seed=0).head(args.rows).drop(columns=[cfg.dataset.label])
    (tmp / "input").mkdir()
    per_file = -(-len(rows) // args.files)
    for i in range(args.files):
        rows.iloc[i * per_file : (i + 1) * per_file].to_parquet(tmp / "input" / f"part-{i}.parquet")
    train = generate(5000, seed=1, defects=Defects(0, 0, 0, 0, 0, 0))
    version = Registry(cfg).register(quick_bundle(cfg, train, seed=1), params={}, alias=CHAMPION)
    predictor = Predictor.from_bundle(Registry(cfg).load(version), version=version)
    paths = input_files(str(tmp / "input"))

    clean = add_features(generate(args.rows, seed=0, defects=Defects(0, 0, 0, 0, 0, 0)), cfg)
    t0 = time.perf_counter()
    predictor.predict_proba(clean)
    results = {"predictor alone (features derived)": len(clean) / (time.perf_counter() - t0)}
    seconds, scored = in_process(paths, cfg, predictor, args.batch_size)
    results["in process, the same steps (baseline)"] = args.rows / seconds

    connect(cfg.ray)
    # One untimed run first: the cluster's worker processes start (and import torch) once, not
    # inside whichever timed run comes first.
    predict_files(cfg, source=paths[0], output=str(tmp / "warm-up"), batch_size=args.batch_size, workers=2)
    for workers in (1, 2):
        out = tmp / f"out-{workers}"
        t0 = time.perf_counter()
        report = predict_files(
            cfg, source=str(tmp / "input"), output=str(out), batch_size=args.batch_size, workers=workers
        )
        wall = time.perf_counter() - t0
        assert report.rows_in == args.rows and report.scored == scored, report.to_dict()
        results[f"mlsys predict, {workers} actor(s)"] = args.rows / wall

    baseline = results["in process, the same steps (baseline)"]
    print(f"{args.rows:,} rows in {args.files} parquet files, {args.rows - scored:,} quarantined")
    for name, rate in results.items():
        print(f"{name:40} {rate:12,.0f} rows/s  ({rate / baseline:.2f}x baseline)")
    out = ROOT / "benchmarks" / "results" / "batch_predict.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "files": args.files, "rows_per_s": results}, indent=1))


if __name__ == "__main__":
    main()
