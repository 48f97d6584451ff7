"""deployments/serve_config.yaml is a valid Serve config whose app builds from mlsys's config."""

from __future__ import annotations

import importlib

import yaml
from ray.serve.schema import ServeDeploySchema

from app.config import ExperimentConfig
from tests.conftest import LOCAL_CONFIG, ROOT

SERVE_CONFIG = ROOT / "deployments" / "serve_config.yaml"


def test_serve_config_matches_serves_schema_and_builds(monkeypatch):
    monkeypatch.chdir(ROOT)
    schema = ServeDeploySchema.model_validate(yaml.safe_load(SERVE_CONFIG.read_text()))
    (application,) = schema.applications
    module, attr = application.import_path.split(":")
    build_app = getattr(importlib.import_module(module), attr)
    app = build_app(application.args)
    assert app is not None
    names = {d.name for d in application.deployments}
    assert names == {"ingress"}
    ingress = next(d for d in application.deployments if d.name == "ingress")
    ExperimentConfig.model_validate(ingress.user_config["experiment"])  # the same schema as the config
    assert (ROOT / application.args["config"]).resolve() == LOCAL_CONFIG.resolve()
