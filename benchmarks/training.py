"""Benchmark: Ray Train throughput against a plain torch loop, and model quality against
HistGradientBoosting, on the built-in data set, all in one run.

    python benchmarks/training.py --rows 200000 --epochs 6

1. Throughput: samples/s of epochs 2..N (start-up excluded: "once started") for Ray Train
   with 1 and 2 workers (DDP, gloo) and for a single-process torch loop over the same
   tensors, same model, same batch size. Ray's per-epoch overhead = 1 - ray/plain at 1 worker.
   The plain loop also runs on one thread (a worker's CPU budget) and inside a bare Ray task,
   with the workers' allocator settings and with glibc's mmap threshold at its old 128 KiB.
2. Quality: holdout AUC of the tuned torch model (Ray Tune search, then DDP training of the
   winner) against scikit-learn's HistGradientBoosting on the same time split.
Writes benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(rows: int, work: Path):
    from app.config import load_config
    from app.data.etl import run_etl
    from app.data.synthetic import generate_chunks, write_dataset
    from app.features.store import FeatureClient
    from app.training.dataset import build_splits

    os.environ.update({"MLSYS_STORAGE__ROOT": str(work / "store"), "MLSYS_RAY__INCLUDE_DASHBOARD": "false"})
    cfg = load_config(ROOT / "deployments/config/local.yaml")
    write_dataset(generate_chunks(rows, seed=0), work / "raw")
    run_etl(cfg, str(work / "raw"))
    FeatureClient(cfg).apply()
    return cfg, build_splits(cfg)


def plain_torch(arrays, spec, *, epochs: int, batch_size: int, lr: float) -> list[float]:
    """Epoch seconds of the single-process baseline."""
    from app.model.net import TabularMLP
    from app.training.loop import array_batches, train_epoch

    torch.manual_seed(0)
    model = TabularMLP(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        train_epoch(model, array_batches(arrays, batch_size, rng=rng), opt)
        times.append(time.perf_counter() - t0)
    return times


def in_ray_task(arrays, spec, *, mmap_threshold: int, **loop) -> list[float]:
    """The plain loop's epoch seconds inside a 1-CPU Ray task (the workers' environment, with
    glibc's mmap threshold set to `mmap_threshold` bytes)."""
    import ray

    env = {"MALLOC_MMAP_THRESHOLD_": str(mmap_threshold)}
    task = ray.remote(num_cpus=1, runtime_env={"env_vars": env})(plain_torch)
    return ray.get(task.remote(arrays, spec, **loop))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--tune-samples", type=int, default=6)
    args = parser.parse_args()

    import ray

    from app.cluster.connection import connect
    from app.config import parse_config
    from app.pipeline import search, train_and_register
    from app.training.fit import make_preprocessor
    from app.training.loop import model_arrays
    from app.training.train import mlp_hyperparameters, model_spec, train

    work = Path(tempfile.mkdtemp(prefix="mlsys-train-bench-"))
    cfg, splits = prepare(args.rows, work)
    connect(cfg.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    pre = make_preprocessor(cfg, splits.train)
    label = cfg.dataset.label
    hp = mlp_hyperparameters(cfg)
    arrays = model_arrays(splits.train, pre, label)
    spec = model_spec(pre, hp)
    n = len(splits.train)

    plain = plain_torch(arrays, spec, epochs=args.epochs, batch_size=hp["batch_size"], lr=hp["lr"])
    results = {"rows_train": n, "plain_torch_samples_per_s": n / statistics.median(plain[1:])}
    # A Ray Train worker holds one CPU, and Ray sets OMP_NUM_THREADS to it: torch in the
    # worker runs one intra-op thread, where the plain loop above used every core. The same
    # loop on one thread separates Ray Train's own overhead from that CPU budget.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    plain_1t = plain_torch(arrays, spec, epochs=args.epochs, batch_size=hp["batch_size"], lr=hp["lr"])
    torch.set_num_threads(threads)
    results["plain_torch_1_thread_samples_per_s"] = n / statistics.median(plain_1t[1:])
    results["plain_torch_threads"] = threads
    from app.cluster.connection import WORKER_ENV

    for name, threshold in (("now", int(WORKER_ENV["MALLOC_MMAP_THRESHOLD_"])), ("128k", 128 * 1024)):
        epoch_s = in_ray_task(
            arrays,
            spec,
            mmap_threshold=threshold,
            epochs=args.epochs,
            batch_size=hp["batch_size"],
            lr=hp["lr"],
        )
        results[f"ray_task_mmap_{name}_samples_per_s"] = n / statistics.median(epoch_s[1:])
    for workers in (1, 2):
        data = cfg.model_dump(mode="json")
        data["mlp"].update(num_workers=workers, epochs=args.epochs, patience=args.epochs + 1)
        run = train(parse_config(data, environ={}), splits.train, splits.valid, pre)
        epoch_s = run.epoch_seconds[1:]
        results[f"ray_{workers}w_samples_per_s"] = n / statistics.median(epoch_s)
        results[f"ray_{workers}w_total_s"] = run.seconds
    results["ray_1w_overhead_vs_plain"] = (
        1 - results["ray_1w_samples_per_s"] / results["plain_torch_samples_per_s"]
    )
    results["ray_1w_overhead_vs_plain_1_thread"] = (
        1 - results["ray_1w_samples_per_s"] / results["plain_torch_1_thread_samples_per_s"]
    )

    outcome = train_and_register(
        cfg, splits=splits, overrides=search(cfg, splits, num_samples=args.tune_samples).overrides
    )
    results["tuned_torch_holdout_auc"] = outcome.metrics["holdout"]["auc"]
    results["hgb_holdout_auc"] = outcome.metrics["baseline_hgb"]["auc"]

    print("| measure | value | baseline (same run) |")
    print("|---|---:|---:|")
    plain_s, plain_1t_s = results["plain_torch_samples_per_s"], results["plain_torch_1_thread_samples_per_s"]
    print(f"| training samples/s, plain torch loop (1 process, {threads} threads) | {plain_s:,.0f} | — |")
    print(f"| training samples/s, plain torch loop (1 process, 1 thread) | {plain_1t_s:,.0f} | — |")
    for name, what in (
        ("now", f"mmap threshold {WORKER_ENV['MALLOC_MMAP_THRESHOLD_']} B"),
        ("128k", "mmap threshold 128 KiB"),
    ):
        rate = results[f"ray_task_mmap_{name}_samples_per_s"]
        print(
            f"| training samples/s, the plain loop in a 1-CPU Ray task, {what} | {rate:,.0f} "
            f"| {rate / plain_s:.2f}x plain, {rate / plain_1t_s:.2f}x plain 1 thread |"
        )
    for w in (1, 2):
        rate = results[f"ray_{w}w_samples_per_s"]
        print(
            f"| training samples/s, Ray Train {w} worker(s), DDP gloo | {rate:,.0f} "
            f"| {rate / plain_s:.2f}x plain, {rate / plain_1t_s:.2f}x plain 1 thread |"
        )
    print(
        f"| holdout AUC, tuned torch MLP | {results['tuned_torch_holdout_auc']:.4f} | HGB {results['hgb_holdout_auc']:.4f} |"
    )
    out = ROOT / "benchmarks" / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
