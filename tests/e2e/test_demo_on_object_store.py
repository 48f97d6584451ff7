"""The whole loop with nothing shared on disk: `mlsys demo` with its tables, shared state and
data files on a real S3 server (SeaweedFS: an Iceberg REST catalog and plain buckets) and its
registry on a real MLflow tracking server whose artifacts are on the same store. Pipeline,
serving, traffic, the monitor, the retrain job and the rollout all run; the storage root keeps
only this node's caches."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.configs import ROOT, config_dict
from tests.e2e.test_cli import assert_reads_as_our_stages_and_results
from tests.helpers import small_cli_env
from tests.objectstore import start_object_store, start_tracking_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BUCKET, PREFIX = "shared", "mlsys"
# What a node may keep under its root: the demo's generated input and HTML page, Feast's
# generated repo file and sqlite online store, downloaded bundles, the monitor's write-ahead log.
NODE_LOCAL = (
    "raw/",
    "report.html",
    "feast/feature_store.yaml",
    "feast/online.db",
    "bundles/",
    "traffic/wal/",
)


def test_the_demo_runs_the_whole_loop_against_the_object_store(tmp_path):
    store = start_object_store(tmp_path / "seaweedfs")
    mlflow = None
    try:
        store.create_bucket(BUCKET)
        mlflow = start_tracking_server(tmp_path / "mlflow", store)
        data = config_dict()
        root = tmp_path / "node"
        data["storage"] = {"root": str(root), "catalog": store.catalog(), "state": f"s3://{BUCKET}/{PREFIX}"}
        data["registry"] = {**data.get("registry", {}), "tracking_uri": mlflow.url}
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(data))
        env = {
            **small_cli_env(),
            "MLSYS_RAY__INCLUDE_DASHBOARD": "true",  # the Jobs API lives in the dashboard
            "MLSYS_RAY__DASHBOARD_PORT": "8267",
            "MLSYS_RETRAIN__JOBS_ADDRESS": "http://127.0.0.1:8267",
            "MLSYS_SERVE__HTTP_PORT": "8126",
            "MLSYS_MLP__EPOCHS": "2",
        }
        args = ["--config", str(config), "demo", "--rows", "12000", "--traffic", "1000"]
        proc = subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        out = proc.stdout
        assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
        assert_reads_as_our_stages_and_results(out + proc.stderr)
        assert "labelled performance (DECAYED)" in out, out[-3000:]
        assert re.search(r"retrain job raysubmit_\w+ \(decay: .*\): SUCCEEDED", out), out[-3000:]
        assert re.search(r"the retrain's model: v\d+ trained on production", out), out[-3000:]
        assert re.search(r"rollout of v\d+: (promoted|rolled back|running)", out), out[-3000:]

        keys = [k.removeprefix(f"{BUCKET}/{PREFIX}/") for k in store.objects(BUCKET)]
        for written in (
            "features/date=",  # the feature table, Feast's offline source
            "checkpoints/train-",  # Ray Train's checkpoints
            "traffic/predictions/hour=",  # the monitor's traffic log
            "traffic/feedback/hour=",
            "serving/experiment.json",  # the split, the feedback key, the rollout's state
            "serving/feedback.key",
            "serving/rollout.json",
            "monitoring/retrain.json",
            "feast/registry.db",
            "reports/etl-",
        ):
            assert any(k.startswith(written) for k in keys), (
                written,
                sorted({k.rsplit("/", 1)[0] for k in keys}),
            )
        assert not any(k.startswith("staging/") for k in keys)
        assert len(mlflow.bundles()) >= 2  # the champion and the retrained challenger, on the store
        assert any("/data/day=" in k for k in store.objects())  # the warehouse, an Iceberg table there
        local = sorted(
            str(p.relative_to(root)) + ("/" if p.is_dir() else "")
            for p in root.rglob("*")
            if p.is_file() or (p.is_dir() and not any(p.iterdir()))
        )
        assert [p for p in local if not p.startswith(NODE_LOCAL)] == []
    finally:
        if mlflow is not None:
            mlflow.stop()
        store.stop()
