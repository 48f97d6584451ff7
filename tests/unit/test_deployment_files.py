"""Every deployment YAML parses, names real entry points and passes its tool's own schema."""

from __future__ import annotations

import shlex

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from app.cli import app as cli_app
from app.config import parse_config
from app.serving.oip_grpc import SERVICER
from tests.configs import ROOT

COMMANDS = {c.name or c.callback.__name__ for c in cli_app.registered_commands}


def test_ray_up_cluster_config_passes_the_autoscaler_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does first; raises on a violation
    assert any("torch==2.13.0" in c and "-e" in c for c in config["setup_commands"])
    assert config["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1


def test_cluster_config_is_a_valid_mlsys_config():
    cfg = parse_config(yaml.safe_load((ROOT / "deployments/config/cluster.yaml").read_text()), environ={})
    assert cfg.features.online.type == "redis" and cfg.registry.tracking_uri.startswith("http")
    assert cfg.dataset.source.startswith("s3://") and cfg.mlp.use_gpu
    # Nothing on a shared disk: the tables behind a catalog, the shared files on the object store
    assert cfg.storage.catalog["type"] == "rest" and cfg.storage.state.startswith("s3://")


@pytest.mark.parametrize("path", ["deployments/kuberay/rayjob.yaml", "deployments/kuberay/rayservice.yaml"])
def test_kuberay_pods_mount_no_shared_volume(path):
    text = (ROOT / path).read_text()
    assert "persistentVolumeClaim" not in text and "volumeMounts" not in text
    assert "nfs" not in (ROOT / "cluster.yaml").read_text()


def test_rayjob_runs_a_real_command():
    job = yaml.safe_load((ROOT / "deployments/kuberay/rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "mlsys" and argv[-1] in COMMANDS
    assert (ROOT / argv[argv.index("--config") + 1]).is_file()


@pytest.mark.parametrize("path", ["deployments/kuberay/rayservice.yaml", "deployments/serve_config.yaml"])
def test_serve_configs_pass_serves_schema(path):
    doc = yaml.safe_load((ROOT / path).read_text())
    serve_config = yaml.safe_load(doc["spec"]["serveConfigV2"]) if doc.get("kind") == "RayService" else doc
    schema = ServeDeploySchema.model_validate(serve_config)
    (application,) = schema.applications
    assert application.import_path == "app.serving.app:build_app"
    assert (ROOT / application.args["config"]).is_file()
    # the servicer `mlsys serve` starts, by the import path Serve resolves in each replica
    assert schema.grpc_options.grpc_servicer_functions == [SERVICER]
