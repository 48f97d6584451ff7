"""Training, evaluation gate and registry on a real local Ray and a real MLflow (sqlite)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from app.data.etl import run_etl
from app.data.synthetic import generate, write_dataset
from app.features.store import FeatureClient
from app.model.preprocess import Preprocessor
from app.pipeline import train_and_register
from app.registry.registry import CHALLENGER, CHAMPION, Registry, RegistryError
from app.training.dataset import build_splits
from app.training.fit import evaluate_bundle
from app.training.train import STATE_FILE, train
from tests.configs import make_config
from tests.integration.train_workers import BackgroundRun, CheckpointWatch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("training")
    cfg = make_config(
        tmp,
        mlp={"epochs": 3, "batch_size": 256, "num_workers": 2, "patience": 10},
        registry={"gate_margin": 0.05},
    )
    write_dataset(iter([generate(12_000, seed=3)]), tmp / "raw.parquet")
    run_etl(cfg, str(tmp / "raw.parquet"))
    FeatureClient(cfg).apply()
    return cfg, build_splits(cfg)


def test_a_worker_killed_mid_run_resumes_from_its_checkpoint_and_finishes_every_epoch(prepared):
    cfg, splits = prepared
    pre = Preprocessor(["age", "income", "score"], ["country", "gender"]).fit(splits.train)
    name, epochs = "killed-mlp", 12
    run = BackgroundRun(
        lambda: train(cfg, splits.train, splits.valid, pre, overrides={"epochs": epochs}, name=name)
    )
    # Each epoch's measured time travels in the checkpoint: the times of the epochs before the
    # kill survive only if the restarted workers resume from a checkpoint, not from scratch.
    watch = CheckpointWatch(
        cfg.storage.path(cfg.storage.checkpoints) / name,
        lambda d: torch.load(d / STATE_FILE, weights_only=True)["epoch_seconds"],
    )
    before = run.wait_until(watch.superseded, what="a registered checkpoint")
    run.kill_a_worker()
    result = run.result()
    assert len(before) < epochs, "the worker was killed mid-run"
    assert result.epochs_completed == epochs
    assert result.epoch_seconds[: len(before)] == before, (result.epoch_seconds, before)
    assert len(result.epoch_seconds) == epochs
    assert np.isfinite(result.best_val_loss)


@pytest.mark.parametrize("cache_shards", [True, False], ids=["object-store", "ray-data-stream"])
def test_every_epoch_trains_on_every_row(prepared, cache_shards, capfd):
    cfg, splits = prepared
    cfg = cfg.model_copy(update={"mlp": cfg.mlp.model_copy(update={"cache_shards": cache_shards})})
    pre = Preprocessor(["age", "income", "score"], ["country", "gender"]).fit(splits.train)
    result = train(cfg, splits.train, splits.valid, pre, overrides={"epochs": 2})
    n, workers = len(splits.train), cfg.mlp.num_workers
    rows = [int(h["rows"]) for h in result.history]
    if cache_shards:  # dealt into equal shards, the last topped up with repeated rows
        assert rows == [-(-n // workers) * workers] * 2
    else:  # Ray Data's equal split leaves out fewer rows than workers
        assert all(n - workers < r <= n for r in rows) and len(rows) == 2
    assert np.isfinite(result.best_val_loss)
    time.sleep(2)  # workers' output reaches the driver's terminal asynchronously
    terminal = capfd.readouterr().err
    assert "Reporting training result" not in terminal  # Ray Train's INFO, not --verbose
    assert "PreemptionWatcher" not in terminal  # no watcher on a cluster we start (WORKER_ENV)


def test_register_gate_promote_rollback(prepared):
    cfg, splits = prepared
    first = train_and_register(cfg, splits=splits)
    assert (first.version, first.alias) == (1, CHAMPION)
    assert first.metrics["holdout"]["auc"] > 0.65
    assert first.metrics["baseline_hgb"]["auc"] > 0.65

    second = train_and_register(cfg, splits=splits)
    assert (second.version, second.alias) == (2, CHALLENGER)

    strict = make_config(
        cfg.storage.path().parent, mlp={"num_workers": 2, "batch_size": 256}, registry={"gate_margin": 0.0}
    )
    bad = train_and_register(strict, splits=splits, overrides={"epochs": 1, "lr": 1e-7})
    assert bad.version is None and "beyond margin" in bad.gate

    registry = Registry(cfg)
    refused = registry.client.search_runs(
        [registry.experiment_id()], filter_string="tags.`gate.passed` = 'false'"
    )
    assert [r.data.tags["gate.reason"] for r in refused] == [bad.gate], "the refusal is a run with its reason"
    assert [(v.version, v.aliases) for v in registry.versions()] == [(1, (CHAMPION,)), (2, (CHALLENGER,))]
    registry.promote(2)
    assert registry.alias_version(CHAMPION) == 2 and registry.alias_version(CHALLENGER) is None
    assert registry.rollback() == 1
    assert registry.alias_version(CHAMPION) == 1
    with pytest.raises(RegistryError):
        registry.rollback()
    with pytest.raises(RegistryError):
        registry.promote(99)


def test_registered_bundle_predicts_exactly_as_at_training_time(prepared):
    cfg, splits = prepared
    registry = Registry(cfg)
    version = registry.alias_version(CHAMPION)
    bundle = registry.load(CHAMPION)
    info = {v.version: v for v in registry.versions()}[version]
    again = evaluate_bundle(bundle, splits, cfg.dataset.label)["holdout"]
    assert again["auc"] == info.metrics["holdout.auc"]
    assert again["log_loss"] == info.metrics["holdout.log_loss"]
    assert info.tags["lineage.data_fingerprint"] == splits.fingerprint()
    assert bundle.profile["numeric"]["income"]["edges"]


def test_search_runs_tracked_trials_for_each_family_and_the_forest(prepared):
    import mlflow

    from app.pipeline import search
    from app.training import choice

    cfg, splits = prepared
    fast = make_config(
        cfg.storage.path().parent,
        mlp={"epochs": 2, "num_workers": 2},
        tune={"num_samples": 2, "max_concurrent": 4},
    )
    result = search(fast, splits, num_samples=2)
    assert len(result.torch.trials) == 2 and len(result.forest.trials) == 2 and len(result.gbdt.trials) == 2
    assert result.family == "mlp"  # model.family: mlp trains the MLP whatever the trees scored
    assert set(result.overrides) == {"lr", "width", "depth", "dropout", "batch_size"}
    assert 0.5 < result.forest.best_metric <= 1.0
    assert 0 < result.gbdt.best_metric < np.log(2) and 0 < result.torch.best_metric < 1
    saved = choice.load(fast)  # what a later `mlsys train` fits
    assert saved is not None and set(saved.best) == {"mlp", "gbdt"}
    assert saved.best["mlp"]["val_loss"] == result.torch.best_metric
    client = mlflow.MlflowClient(fast.mlflow_uri)
    for experiment, family in (("torch", "mlp"), ("gbdt", "gbdt"), ("rf", "random_forest")):
        runs = client.search_runs([client.get_experiment_by_name(f"mlsys-tune-{experiment}").experiment_id])
        assert len(runs) >= 2 and all(r.data.tags.get("mlsys.family") == family for r in runs)
        assert all(("cv_auc" if family == "random_forest" else "val_loss") in r.data.metrics for r in runs)


def test_asha_stops_the_trials_that_trail_at_a_rung(prepared):
    """Trials run one after another; at each rung (1, 2, 4 epochs) ASHA stops a trial in the
    worse half of those seen there, so of six some stop early and the best runs every epoch."""
    import time

    import mlflow

    from app.training.fit import make_preprocessor
    from app.training.tune import tune_torch

    cfg, splits = prepared
    asha = make_config(
        cfg.storage.path().parent,
        mlp={"epochs": 4, "num_workers": 2},
        tune={"scheduler": "asha", "max_concurrent": 1},
    )
    started_ms = int(time.time() * 1000)
    tune_torch(asha, splits.train, splits.valid, make_preprocessor(asha, splits.train), num_samples=6)
    client = mlflow.MlflowClient(asha.mlflow_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("mlsys-tune-torch").experiment_id],
        filter_string=f"attributes.start_time >= {started_ms}",
    )
    epochs = sorted(len(client.get_metric_history(r.info.run_id, "val_loss")) for r in runs)
    assert len(epochs) == 6 and epochs[-1] == 4 and epochs[0] < 4, epochs
