"""Model families on a real local Ray, MLflow and Serve: gradient-boosted trees trained with
XGBoostTrainer, registered, loaded and served with the bundle's own scores; `auto` searching
both families and registering the better one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from app.data.etl import run_etl
from app.data.synthetic import generate, write_dataset
from app.features.store import FeatureClient
from app.model.bundle import FAMILY_TAG
from app.model.predictor import Predictor
from app.registry.registry import CHAMPION, Registry
from app.training.dataset import build_splits
from tests.configs import make_config
from tests.helpers import free_port
from tests.integration.train_workers import BackgroundRun, CheckpointWatch

pytestmark = pytest.mark.integration
PORT = free_port()
FEATURES = {"age": 41, "income": 52000.0, "score": 0.4, "country": "US", "gender": "F"}
SECTIONS = {
    "mlp": {"epochs": 2, "batch_size": 256, "num_workers": 2, "patience": 10},
    # On Ray Train whatever the rows (the in-process path is compared with it below).
    "gbdt": {"num_workers": 2, "rounds": 300, "in_process_rows": 0},
    "tune": {"num_samples": 1, "max_concurrent": 4},
    "registry": {"gate_margin": 0.05},
    "serve": {"http_port": PORT, "experiment": {"name": "exp-families", "split": {"champion": 1.0}}},
}


def _config(root, family: str):
    return make_config(root, **SECTIONS, model={"family": family})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("families")
    cfg = _config(tmp, "gbdt")
    write_dataset(iter([generate(12_000, seed=3)]), tmp / "raw.parquet")
    run_etl(cfg, str(tmp / "raw.parquet"))
    features = FeatureClient(cfg)
    features.apply()
    features.materialize()  # the served app reads entities from the online store
    return cfg, build_splits(cfg)


@pytest.fixture(scope="module")
def gbdt_champion(prepared):
    """A gbdt bundle trained distributed (2 XGBoostTrainer workers) and registered as champion."""
    from app.training.fit import fit_candidate

    cfg, splits = prepared
    bundle = fit_candidate(cfg, splits)  # model.family: gbdt
    version = Registry(cfg).register(bundle, params={"family": bundle.family}, alias=CHAMPION)
    return bundle, version


def test_gbdt_trains_on_ray_train_and_the_registered_bundle_scores_identically(prepared, gbdt_champion):
    import mlflow

    cfg, splits = prepared
    bundle, version = gbdt_champion
    assert bundle.family == "gbdt" and bundle.booster and bundle.state_dict is None
    m = bundle.metrics
    assert m["holdout"]["auc"] > 0.65 and m["holdout"]["auc"] > m["baseline_hgb"]["auc"] - 0.03
    assert 1 <= m["training"]["rounds"] <= 300 and m["training"]["history"]
    assert m["training"]["trainer"] == "ray-train" and bundle.lineage["trainer"] == "ray-train"
    assert bundle.profile["score"]["edges"], "the score profile for prediction drift"

    registry = Registry(cfg)
    loaded = registry.load(version)
    assert loaded.family == "gbdt"
    np.testing.assert_array_equal(
        Predictor.from_bundle(bundle).predict_proba(splits.holdout),
        Predictor.from_bundle(loaded).predict_proba(splits.holdout),
    )
    info = {v.version: v for v in registry.versions()}[version]
    assert info.family == "gbdt"
    client = mlflow.MlflowClient(cfg.mlflow_uri)
    run = client.get_run(info.run_id)
    assert run.data.tags[FAMILY_TAG] == "gbdt" and run.data.params["family"] == "gbdt"
    assert client.get_model_version(cfg.registry.model_name, str(version)).tags["family"] == "gbdt"


def test_the_served_gbdt_champion_scores_as_its_bundle(prepared, gbdt_champion):
    from ray import serve

    from app.serving import app as serving_app
    from app.serving.scoring import raw_rows_to_frame

    cfg, _ = prepared
    _, version = gbdt_champion
    try:
        url = serving_app.start(cfg)
        got = requests.post(f"{url}/predict", json={"features": FEATURES, "key": "k"}, timeout=30)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["model_version"] == version
        frame = raw_rows_to_frame([FEATURES], cfg)
        expected = Predictor.from_bundle(Registry(cfg).load(version)).predict_proba(frame)[0]
        assert abs(body["score"] - expected) < 1e-6  # time features as of now: same hour either way
    finally:
        serve.shutdown()


def test_auto_searches_both_families_and_registers_the_better(prepared, gbdt_champion):
    import mlflow

    from app.pipeline import train_and_register
    from app.training import choice

    cfg, splits = prepared
    auto = _config(cfg.storage.path().parent, "auto")
    assert choice.load(auto) is None  # no search yet: training runs one first
    outcome = train_and_register(auto, splits=splits)
    found = choice.load(auto)
    assert found is not None and set(found.best) == {"mlp", "gbdt"}
    better = min(found.best, key=lambda f: found.best[f]["val_loss"])
    assert found.family == better and outcome.family == better
    assert outcome.source.startswith("search (")
    assert outcome.version is not None, outcome.gate  # within the gate's 0.05 of the gbdt champion
    assert {v.version: v for v in Registry(auto).versions()}[outcome.version].family == better
    client = mlflow.MlflowClient(auto.mlflow_uri)
    trials = client.search_runs([client.get_experiment_by_name("mlsys-tune-gbdt").experiment_id])
    assert trials and all(r.data.tags.get(FAMILY_TAG) == "gbdt" for r in trials)


def test_one_worker_on_ray_train_and_the_driver_boost_the_same_trees(prepared):
    """Below `gbdt.in_process_rows` the driver boosts the trees Ray Train would have: with one
    worker (one thread) the booster is the same, byte for byte, and so is its learning curve."""
    from app.training.fit import make_preprocessor
    from app.training.train_gbdt import IN_PROCESS, RAY_TRAIN, train_gbdt

    cfg, splits = prepared
    one = make_config(cfg.storage.path().parent, **{**SECTIONS, "gbdt": {"num_workers": 1, "rounds": 300}})
    pre = make_preprocessor(one, splits.train)
    fits = {t: train_gbdt(one, splits.train, splits.valid, pre, trainer=t) for t in (RAY_TRAIN, IN_PROCESS)}
    ray_run, local = fits[RAY_TRAIN], fits[IN_PROCESS]
    assert (ray_run.trainer, local.trainer) == (RAY_TRAIN, IN_PROCESS)
    assert local.booster == ray_run.booster and local.spec == ray_run.spec
    assert local.history == ray_run.history and local.best_val_loss == ray_run.best_val_loss
    assert local.checkpoint_path is None and ray_run.checkpoint_path


def _last_round(checkpoint) -> int:
    from app.training.train_gbdt import HISTORY_FILE

    return json.loads((checkpoint / HISTORY_FILE).read_text())["history"][-1]["round"]


def test_a_gbdt_worker_killed_mid_run_resumes_from_the_last_checkpoint(prepared):
    from app.training.fit import make_preprocessor
    from app.training.train_gbdt import CHECK_EVERY, train_gbdt

    cfg, splits = prepared
    name = "killed-gbdt"
    pre = make_preprocessor(cfg, splits.train)
    overrides = {"learning_rate": 0.05, "checkpoint_seconds": 0}  # a checkpoint every CHECK_EVERY rounds
    run = BackgroundRun(
        lambda: train_gbdt(cfg, splits.train, splits.valid, pre, overrides=overrides, name=name)
    )
    watch = CheckpointWatch(cfg.storage.path(cfg.storage.checkpoints) / name, _last_round)
    superseded = run.wait_until(watch.superseded, what="a registered checkpoint")
    old = watch.on_disk() | set(watch.seen)
    run.kill_a_worker()
    # The restarted workers' first checkpoint is CHECK_EVERY rounds past the registered one they
    # resumed from, so past `superseded`; workers starting over from no trees would checkpoint
    # round CHECK_EVERY - 1 again.
    first_new = run.wait_until(
        lambda: [r for d, r in sorted(watch.poll().items()) if d not in old],
        what="a checkpoint of the restarted workers",
    )[0]
    result = run.result()
    assert first_new > superseded >= CHECK_EVERY - 1, "resumed from a checkpoint, not from scratch"
    rounds = [h["round"] for h in result.history]
    assert rounds == list(range(len(rounds))), "one learning curve across the restart"
    assert max(rounds) >= first_new, "went on past the kill"
