"""Run by tests/e2e/test_multinode.py in its own process: a 4-node Ray test cluster on one
machine (ray.cluster_utils.Cluster), the pipeline's stages with the warehouse on a real object
store (SeaweedFS's S3 and Iceberg REST catalog), a worker node removed mid-training, and
serving with its shared state (experiment split, feedback key, producers, Feast's registry,
the ETL report) on the same store. Prints one JSON line of facts for the test to check."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from app.config import parse_config
from app.data import warehouse
from app.data.etl import run_etl
from app.data.shared_files import shared_files
from app.data.synthetic import generate, write_dataset
from app.features.store import FeatureClient
from app.monitoring.monitor import get_monitor
from app.registry.registry import CHAMPION, Registry
from app.serving import app as serving_app
from app.serving.client import ServiceClient
from app.serving.producers import producer_store
from app.training.dataset import build_splits
from app.training.fit import fit_candidate
from tests.configs import config_dict
from tests.objectstore import start_object_store


def checkpoints(cfg) -> list[str]:
    """The names of Ray Train's checkpoints, in every run's folder on the store."""
    files = shared_files(cfg.storage)
    runs = files.uri(cfg.storage.checkpoints)
    return [name for run in files.names(runs) for name in files.names(f"{runs}/{run}")]


def main(work: Path) -> None:
    # Head: 1 CPU (drivers, controllers); three 1-CPU workers: two Train workers must span nodes.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": True, "dashboard_port": 8268},
    )
    store = start_object_store(work / "seaweedfs")  # the tables' store: no node's disk holds them
    # Each worker node has a temporary folder of its own (Ray's session: logs, spilled objects)
    temp = [Path(tempfile.mkdtemp(prefix=f"mlsys-node{i}-")) for i in range(3)]
    try:
        workers = [cluster.add_node(num_cpus=1, temp_dir=str(t)) for t in temp]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        store.create_bucket("state")  # the experiment split, rollout state, feedback key
        data = config_dict()
        data.update(
            storage={"root": str(work / "store"), "catalog": store.catalog(), "state": "s3://state/mlsys"},
            ray={"address": cluster.address},
            model={**data["model"], "max_failures": 3},
            mlp={**data["mlp"], "epochs": 12, "num_workers": 2, "patience": 20},
            serve={"http_port": 8128},
        )
        cfg = parse_config(data, environ={})
        write_dataset(iter([generate(6000, seed=2)]), work / "raw.parquet")
        run_etl(cfg, str(work / "raw.parquet"))
        features = FeatureClient(cfg)
        features.apply()
        features.materialize()
        splits = build_splits(cfg)
        outcome: dict = {}
        runner = threading.Thread(target=lambda: outcome.update(bundle=fit_candidate(cfg, splits)))
        runner.start()
        # Wait until the Train workers run and a first epoch is checkpointed, then take away a node
        # that runs one of them.
        deadline, train_nodes = time.time() + 300, set()
        while time.time() < deadline:
            checkpointed = any(n.startswith("checkpoint_20") for n in checkpoints(cfg))
            actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
            train_nodes = {a.node_id for a in actors if "TrainWorker" in a.class_name}
            if checkpointed and len(train_nodes) == 2:
                break
            time.sleep(0.5)
        victim = next(w for w in workers if w.node_id in train_nodes)
        cluster.remove_node(victim)
        runner.join(timeout=600)
        bundle = outcome["bundle"]
        Registry(cfg).register(bundle, params={}, alias=CHAMPION)

        url = serving_app.start(cfg)
        client = ServiceClient(url, outcomes_token=producer_store(cfg).token_for("multinode"))
        prediction = client.predict_entity(int(splits.train[cfg.dataset.entity].iloc[0]))
        feedback = client.feedback(prediction, 1)  # the producer's token, read from the store
        ray.get(get_monitor(cfg).flush.remote())  # the traffic log's parts: on the store
        print(
            "FACTS",
            json.dumps(
                {
                    "nodes": len([n for n in ray.nodes() if n["Alive"]]),
                    "train_worker_nodes": len(train_nodes),
                    "last_epoch": max(h["epoch"] for h in bundle.metrics["training"]["history"]),
                    "epochs": cfg.mlp.epochs,
                    "prediction_variant": prediction["variant"],
                    "feedback": feedback["status"],
                    "warehouse": warehouse.open_table(cfg, create=False).location(),
                    "warehouse_files_on_store": sum("/data/day=" in k for k in store.objects()),
                    "local_tables": [
                        str(p) for p in (cfg.storage.warehouse, cfg.storage.path("catalog.db")) if p.exists()
                    ],
                    "state_on_store": store.objects("state"),
                    "node_temp_dirs": len({w.get_temp_dir_path() for w in workers}),
                    "project_files_in_node_temp": [str(p) for t in temp for p in t.rglob("*.parquet")],
                    "local_traffic": [  # only the monitor's write-ahead log is on its node's disk
                        str(p)
                        for p in cfg.storage.path(cfg.storage.traffic).rglob("*")
                        if p.is_file() and cfg.storage.wal not in p.parents
                    ],
                    "local_state": [
                        str(p)
                        for d in (
                            "serving",
                            "reports",
                            "feast/registry.db",
                            "features",
                            "staging",
                            "checkpoints",
                        )
                        for p in cfg.storage.path().glob(f"{d}*")
                    ],
                }
            ),
        )
    finally:  # never leave the test cluster's processes behind, even on failure
        ray.shutdown()
        cluster.shutdown()
        store.stop()
        for t in temp:
            shutil.rmtree(t, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
