"""The multi-node path on one machine: work spans nodes, and a node lost mid-training is survived."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.configs import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_pipeline_and_serving_on_a_multi_node_cluster_survive_a_lost_node(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.e2e.multinode_run", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    facts = json.loads(
        next(x for x in proc.stdout.splitlines() if x.startswith("FACTS ")).removeprefix("FACTS ")
    )
    assert facts["train_worker_nodes"] == 2  # the two DDP workers ran on two different nodes
    assert facts["nodes"] == 3  # a worker node was removed mid-training ...
    assert facts["last_epoch"] == facts["epochs"] - 1  # ... and the run resumed and finished
    assert facts["prediction_variant"] == "champion"  # served from the multi-node cluster
    # ETL's merge tasks on the worker nodes wrote the warehouse to the object store, not to disk
    assert facts["warehouse"].startswith("s3://") and facts["warehouse_files_on_store"] > 0
    assert facts["local_tables"] == []
    assert facts["feedback"] in ("joined", "recorded")  # a producer's outcome taken by a replica
    shared = {f"state/mlsys/serving/{name}" for name in ("experiment.json", "feedback.key", "producers.json")}
    shared.add("state/mlsys/feast/registry.db")  # read by the replicas on other nodes
    assert shared <= set(facts["state_on_store"])
    assert any(k.startswith("state/mlsys/reports/etl-") for k in facts["state_on_store"])
    # the feature table the tasks built and the checkpoints the restarted worker group resumed from
    assert any(k.startswith("state/mlsys/features/date=") for k in facts["state_on_store"])
    assert any(k.startswith("state/mlsys/checkpoints/train-") for k in facts["state_on_store"])
    traffic = [k for k in facts["state_on_store"] if k.startswith("state/mlsys/traffic/")]
    assert any(k.startswith("state/mlsys/traffic/predictions/hour=") for k in traffic)  # the monitor's log
    assert any(k.startswith("state/mlsys/traffic/feedback/hour=") for k in traffic)
    assert facts["local_traffic"] == []
    assert facts["node_temp_dirs"] == 3 and facts["project_files_in_node_temp"] == []
    assert facts["local_state"] == []
