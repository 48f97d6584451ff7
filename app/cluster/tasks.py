"""CPU-bound work on the cluster: tasks sized to its real cores, and parquet reads."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import ray


def read_parquet(paths: str | list[str], **kwargs: Any) -> ray.data.Dataset:
    """`ray.data.read_parquet` through Ray Data's V1 parquet reader.

    The V2 reader (Ray's default) starts a pool of 32 footer-reading actors, each a new Python
    process, for every read: on 2 cores a 113-file table took 13.2 s against 0.77 s with V1,
    whatever its rows (benchmarks/fixed_costs.py). Only our own reads switch: Feast's Ray
    engine keeps Ray's default (with V1 it materialized older rows than the newest for some
    entities: tests/integration/test_features.py).
    V1 samples files while planning, behind a progress bar of its own that would print into
    our output even in a log: it stays off for that call (the run's progress is unchanged).
    """
    import ray.data

    context = ray.data.DataContext.get_current()
    defaults = {
        "use_datasource_v2": context.use_datasource_v2,
        "enable_progress_bars": context.enable_progress_bars,
    }
    context.use_datasource_v2 = context.enable_progress_bars = False
    try:
        return ray.data.read_parquet(paths, **kwargs)
    finally:
        for name, value in defaults.items():
            setattr(context, name, value)


def cpu_parallelism() -> int:
    """How many CPU-bound tasks are worth running at once.

    A local cluster advertises more logical CPUs than the machine has (see RayConfig.num_cpus),
    so on one node we use the real core count: more tasks would only add worker processes,
    memory and contention. On a multi-node cluster, its CPUs.
    """
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if len(ray.nodes()) == 1:
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, cpus)


def cpus_per_task() -> float:
    """Logical CPUs to request per CPU-bound task so that only `cpu_parallelism()` run at once.

    Requesting them (rather than capping an operator's concurrency) lets Ray Data fuse the
    operators that request the same (a transform and its write): fewer worker processes and
    less memory.
    """
    return max(1.0, ray.cluster_resources().get("CPU", 1) / cpu_parallelism())


def run_tasks(fn: Callable[..., Any], calls: Iterable[tuple], *, limit: int | None = None) -> list:
    """Run `fn(*args)` as Ray tasks with at most `limit` in flight; results in call order."""
    remote = ray.remote(num_cpus=1)(fn)
    limit = limit or cpu_parallelism()
    refs, results = [], {}
    for args in calls:
        if len(refs) - len(results) >= limit:
            pending = [r for r in refs if r not in results]
            ready, _ = ray.wait(pending, num_returns=1)
            results[ready[0]] = ray.get(ready[0])
        refs.append(remote.remote(*args))
    return [results[r] if r in results else ray.get(r) for r in refs]
