"""deployments/serve_config.yaml is a valid Serve config whose app builds from mlsys's config."""

from __future__ import annotations

import hashlib
import importlib

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from app.config import ExperimentConfig, load_config
from tests.configs import LOCAL_CONFIG, ROOT

SERVE_CONFIG = ROOT / "deployments" / "serve_config.yaml"


def serve_application():
    """The YAML's one application, and its `build_app` resolved the way `serve deploy` does."""
    schema = ServeDeploySchema.model_validate(yaml.safe_load(SERVE_CONFIG.read_text()))
    (application,) = schema.applications
    module, attr = application.import_path.split(":")
    return application, getattr(importlib.import_module(module), attr)


def deployment_of(app):
    # A bound Serve Application has no public accessor for its deployment (Ray pinned in pyproject).
    return app._bound_deployment


def test_serve_config_matches_serves_schema_and_builds_the_configs_application(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("MLSYS_ADMIN_TOKEN", raising=False)
    application, build_app = serve_application()
    assert (ROOT / application.args["config"]).resolve() == LOCAL_CONFIG.resolve()
    cfg = load_config(LOCAL_CONFIG)

    ingress = deployment_of(build_app(application.args))
    # Every deployment the YAML configures exists in the built app under that name.
    assert {d.name for d in application.deployments} == {"ingress"} == {ingress.name}
    # The ingress starts on the config's experiment; the YAML's user_config is the same one.
    assert ingress.user_config == {"experiment": cfg.serve.experiment.model_dump()}
    yaml_ingress = next(d for d in application.deployments if d.name == "ingress")
    assert ExperimentConfig.model_validate(yaml_ingress.user_config["experiment"]) == cfg.serve.experiment
    # Replicas get the whole config, no model deployments (placement "ingress"), and no token.
    assert cfg.serve.placement == "ingress"
    assert ingress.init_args == (cfg.model_dump(mode="json"), {}, None)
    assert ingress.max_ongoing_requests == 256 and ingress.ray_actor_options["num_cpus"] == 1


def test_the_admin_token_reaches_the_ingress_only_as_its_digest(monkeypatch):
    monkeypatch.chdir(ROOT)
    token = "s3cret-admin-token"
    monkeypatch.setenv("MLSYS_ADMIN_TOKEN", token)
    application, build_app = serve_application()
    ingress = deployment_of(build_app(application.args))
    assert ingress.init_args[2] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr((ingress.init_args, ingress.init_kwargs, ingress.user_config))


def test_deployment_placement_adds_one_model_deployment_per_variant(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("MLSYS_ADMIN_TOKEN", raising=False)
    data = yaml.safe_load(LOCAL_CONFIG.read_text())
    data["serve"] = {**data.get("serve", {}), "placement": "deployment"}
    config = tmp_path / "mlsys.yaml"
    config.write_text(yaml.safe_dump(data))
    _, build_app = serve_application()
    cfg = load_config(config)

    ingress = deployment_of(build_app({"config": str(config)}))
    handles = ingress.init_args[1]
    assert set(handles) == set(cfg.serve.experiment.aliases) == {"champion", "challenger"}
    for alias, model_app in handles.items():
        model = deployment_of(model_app)
        assert model.name == f"model-{alias}"
        assert model.init_args == (cfg.model_dump(mode="json"), alias)
        assert model.ray_actor_options["num_gpus"] == 0  # serve.use_gpu is off in the local config


def test_serve_deploy_args_carry_the_admin_digest_and_refuse_anything_else(monkeypatch):
    import pydantic

    from app.serving.app import build_app

    monkeypatch.delenv("MLSYS_ADMIN_TOKEN", raising=False)
    digest = hashlib.sha256(b"deploy-token").hexdigest()
    ingress = build_app({"config": str(LOCAL_CONFIG), "admin_token_sha256": digest})._bound_deployment
    assert ingress.init_args[2] == digest
    with pytest.raises(pydantic.ValidationError, match="admin_token_sha256"):
        build_app({"config": str(LOCAL_CONFIG), "admin_token_sha256": "deploy-token"})
