"""Three fixed costs a small pipeline paid whatever its rows, each beside what replaced it.

1. One `read_parquet` of a date-partitioned table: Ray Data's default (V2) reader, which starts
   a pool of footer-reading actors per read, against `app.cluster.tasks.read_parquet` (V1).
2. A bare Ray Train run (one worker, N reports with a checkpoint, no compute): Ray Train's
   controller polling every 2 s (its default) against every 0.2 s (`app.cluster.connection.WORKER_ENV`),
   and Ray Train V1 for reference.
3. The MLP's training run (`app.training.train.train` with the pipeline's settings: 2 DDP
   workers, up to 10 epochs with early stopping) on the built-in generator's rows: workers
   taking their shards from the object store (`mlp.cache_shards`, the default) against
   streaming them from Ray Data every epoch.

Each variant runs in a fresh process with a fresh local cluster (the poll interval is read
when Ray Train's controller starts). Usage:
    python benchmarks/fixed_costs.py [--partitions 113] [--reads 3] [--reports 10] [--rows 30000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_table(root: Path, partitions: int, rows_per_partition: int = 260) -> None:
    """A warehouse-like table: one parquet file per date partition."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    for day in range(partitions):
        part = root / f"date=2026-{1 + day // 28:02d}-{1 + day % 28:02d}"
        part.mkdir(parents=True)
        ids = np.arange(day * rows_per_partition, (day + 1) * rows_per_partition)
        pd.DataFrame({"user_id": ids, "x": rng.normal(size=len(ids))}).to_parquet(part / "part.parquet")


def time_reads(table: str, reader: str, reads: int) -> list[float]:
    import ray
    import ray.data

    from app.cluster.tasks import read_parquet

    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    read = read_parquet if reader == "v1" else ray.data.read_parquet
    seconds = []
    for _ in range(reads):
        started = time.perf_counter()
        read(table, partitioning=None).to_pandas()  # rows read, not a count from footers
        seconds.append(time.perf_counter() - started)
    ray.shutdown()
    return seconds


def time_ray_train(reports: int, storage: str) -> dict[str, float]:
    import ray
    import ray.train
    import ray.train.torch
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig

    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="ERROR")

    def loop(config: dict) -> None:
        for i in range(config["reports"]):
            with tempfile.TemporaryDirectory() as d:
                Path(d, "state").write_bytes(b"0" * 100_000)
                ray.train.report(
                    {"at": time.time(), "i": i}, checkpoint=ray.train.Checkpoint.from_directory(d)
                )

    started = time.time()
    trainer = ray.train.torch.TorchTrainer(
        loop,
        train_loop_config={"reports": reports},
        scaling_config=ScalingConfig(num_workers=1),
        run_config=RunConfig(
            storage_path=storage, name=f"run-{started}", checkpoint_config=CheckpointConfig(num_to_keep=2)
        ),
    )
    result = trainer.fit()
    ended = time.time()
    at = result.metrics_dataframe["at"].tolist()
    ray.shutdown()
    return {"total": ended - started, "to_first_report": at[0] - started, "after_last_report": ended - at[-1]}


def time_training(rows: int, cache_shards: bool) -> dict[str, float]:
    """One `train` call on generated rows (70/15 train/valid), the app's own cluster settings."""
    from app.config import load_config
    from app.data.synthetic import generate
    from app.model.preprocess import Preprocessor
    from app.training.train import train

    cfg = load_config()
    cfg = cfg.model_copy(update={"mlp": cfg.mlp.model_copy(update={"cache_shards": cache_shards})})
    frame = generate(rows, seed=0)
    cut, end = int(rows * 0.7), int(rows * 0.85)
    pre = Preprocessor(["age", "income", "score"], ["country", "gender"]).fit(frame[:cut])
    started = time.perf_counter()
    result = train(cfg, frame[:cut], frame[cut:end], pre)
    return {
        "total": time.perf_counter() - started,
        "epochs": result.epochs_completed,
        "epoch_compute": sum(result.epoch_seconds),
    }


def in_fresh_process(args: list[str], env: dict[str, str] | None = None) -> object:
    done = subprocess.run(
        [sys.executable, __file__, *args],
        env={**os.environ, "RAY_ADDRESS": "", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=113)
    parser.add_argument("--reads", type=int, default=3)
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measurement, printed as JSON for the parent
        kind, *rest = args.child
        if kind == "read":
            print(json.dumps(time_reads(rest[0], rest[1], int(rest[2]))))
        elif kind == "fit":
            print(json.dumps(time_training(int(rest[0]), rest[1] == "object-store")))
        else:
            print(json.dumps(time_ray_train(int(rest[0]), rest[1])))
        return

    from app.cluster.connection import WORKER_ENV

    with tempfile.TemporaryDirectory() as work:
        table = Path(work) / "table"
        write_table(table, args.partitions)
        reads = {
            reader: in_fresh_process(["--child", "read", str(table), reader, str(args.reads)])
            for reader in ("v2", "v1")
        }
        interval = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"

        def ray_train(env: dict[str, str]) -> dict:
            return in_fresh_process(["--child", "train", str(args.reports), str(Path(work) / "runs")], env)

        polls = {seconds: ray_train({interval: seconds}) for seconds in ("2.0", WORKER_ENV[interval])}
        # For reference: Ray Train's previous implementation (V1), still selectable in Ray 2.60.
        train_v1 = ray_train({"RAY_TRAIN_V2_ENABLED": "0"})
        storage = {"MLSYS_STORAGE__ROOT": str(Path(work) / "store"), "MLSYS_RAY__INCLUDE_DASHBOARD": "false"}
        fits = {
            shards: in_fresh_process(["--child", "fit", str(args.rows), shards], storage)
            for shards in ("ray-data", "object-store")
        }
    v2, v1 = (statistics.median(reads[r][1:] or reads[r]) for r in ("v2", "v1"))
    print(f"read_parquet, {args.partitions} files, median of reads 2..{args.reads} (first read)")
    print(f"  Ray Data's default (V2) reader: {v2:6.2f} s ({reads['v2'][0]:.2f} s)")
    print(
        f"  app.cluster.tasks.read_parquet (V1):  {v1:6.2f} s ({reads['v1'][0]:.2f} s)   {v2 / v1:.1f}x faster"
    )
    print(f"Ray Train, 1 worker, {args.reports} reports with a checkpoint, no compute")
    for seconds, t in polls.items():
        print(
            f"  controller polls every {seconds} s: {t['total']:5.1f} s "
            f"(to the first report {t['to_first_report']:.1f} s, after the last {t['after_last_report']:.1f} s)"
        )
    print(f"  Ray Train V1 (RAY_TRAIN_V2_ENABLED=0), for reference: {train_v1['total']:5.1f} s")
    slow, fast = (polls[s]["total"] for s in polls)
    print(f"  {slow / fast:.1f}x faster at {WORKER_ENV[interval]} s")
    print(f"The MLP's training run, {args.rows:,} generated rows, 2 workers")
    for shards, t in fits.items():
        print(
            f"  shards from {shards:12}: {t['total']:5.1f} s "
            f"({t['epochs']} epochs, {t['epoch_compute']:.1f} s of them in training steps)"
        )
    streamed, stored = (fits[s]["total"] for s in ("ray-data", "object-store"))
    print(f"  {streamed - stored:.1f} s less from the object store")


if __name__ == "__main__":
    main()
