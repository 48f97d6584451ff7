"""Gradient-boosted trees without Ray: inputs, boosting, the search verdict, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from app.config import ConfigError
from app.data import state
from app.model import trees
from app.model.preprocess import Preprocessor
from app.model.trees import TreeSpec, tree_inputs
from app.training import choice as verdict
from app.training.gbdt import SEARCHABLE, arrays_dmatrix, boost, frame_arrays, gbdt_hyperparameters
from tests.configs import make_config


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n), "c": rng.choice(list("abcd"), n)})
    logit = 1.5 * df["x"] - df["z"] + np.where(df["c"] == "b", 1.2, 0.0)
    df["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df.loc[::11, "x"] = np.nan
    return df


def test_tree_inputs_take_values_with_nan_for_missing_and_codes_as_categories():
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0], "c": ["a", None, "zzz"]})
    pre = Preprocessor(["x"], ["c"]).fit(df.iloc[[0, 2]])
    x = tree_inputs(pre.transform_batch(df))
    assert x.dtype == np.float32 and x.shape == (3, 2)  # no missing-indicator column
    assert np.isnan(x[1, 0]) and x[0, 0] == pytest.approx(-1.0) and x[2, 0] == pytest.approx(1.0)
    assert x[:, 1].tolist() == [1.0, 0.0, 2.0]  # "a" -> 1, missing -> unknown 0, "zzz" -> 2
    spec = TreeSpec.for_preprocessor(pre)
    assert spec.feature_types == ("q", "c") and spec.feature_names == ("x", "c")
    assert TreeSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_boosting_stops_early_and_keeps_the_best_rounds_trees():
    train, valid = _frame(3000, 0), _frame(1000, 1)
    pre = Preprocessor(["x", "z"], ["c"]).fit(train)
    spec = TreeSpec.for_preprocessor(pre)
    hp = {"learning_rate": 0.3, "max_depth": 4, "reg_lambda": 1.0, "min_child_weight": 1.0}
    result = boost(
        {**hp, "rounds": 500, "early_stopping_rounds": 5},
        arrays_dmatrix(frame_arrays(train, pre, "label"), spec),
        arrays_dmatrix(frame_arrays(valid, pre, "label"), spec),
    )
    assert len(result.history) < 500, "early stopping ended the run"
    assert result.booster.num_boosted_rounds() == result.best_iteration + 1
    assert result.best_val_loss == pytest.approx(min(h["val_loss"] for h in result.history))
    assert result.best_val_loss < np.log(2)  # better than a constant 0.5


def test_boosting_resumed_from_earlier_trees_counts_rounds_on():
    """What a restarted Ray Train worker does: continue from the checkpoint's trees."""
    train, valid = _frame(3000, 0), _frame(1000, 1)
    pre = Preprocessor(["x", "z"], ["c"]).fit(train)
    spec = TreeSpec.for_preprocessor(pre)
    dtrain = arrays_dmatrix(frame_arrays(train, pre, "label"), spec)
    dvalid = arrays_dmatrix(frame_arrays(valid, pre, "label"), spec)
    hp = {"learning_rate": 0.05, "max_depth": 3, "reg_lambda": 1.0, "min_child_weight": 1.0}
    first = boost({**hp, "rounds": 10, "early_stopping_rounds": 50}, dtrain, dvalid)
    assert first.booster.num_boosted_rounds() == 10
    more = boost({**hp, "rounds": 500, "early_stopping_rounds": 5}, dtrain, dvalid, start=first.booster)
    assert more.history[0]["round"] == 10 and more.best_iteration >= 10
    assert more.booster.num_boosted_rounds() == more.best_iteration + 1
    assert more.best_val_loss < first.best_val_loss


def test_continued_boosting_learns_from_new_rows_and_keeps_the_bundle_contract(tmp_path):
    """Online learning for trees: more trees on the new labelled window, same preprocessor."""
    from app.model.bundle import ModelBundle
    from app.model.predictor import Predictor
    from app.model.trees import booster_bytes
    from app.training.gbdt import continue_boosting, tree_spec

    train, valid = _frame(3000, 0), _frame(1000, 1)
    pre = Preprocessor(["x", "z"], ["c"]).fit(train)
    spec = TreeSpec.for_preprocessor(pre)
    hp = {"learning_rate": 0.3, "max_depth": 3, "reg_lambda": 1.0, "min_child_weight": 1.0}
    result = boost(
        {**hp, "rounds": 3, "early_stopping_rounds": 3},
        arrays_dmatrix(frame_arrays(train, pre, "label"), spec),
        arrays_dmatrix(frame_arrays(valid, pre, "label"), spec),
    )
    bundle = ModelBundle(
        spec=tree_spec(pre, hp, result.booster),
        state_dict=None,
        booster=booster_bytes(result.booster),
        preprocessor=pre,
        features=["x", "z", "c"],
        feature_service="model_v1",
    )
    updated = continue_boosting(bundle, valid, valid["label"].to_numpy(), rounds=10)
    assert updated.spec.rounds == bundle.spec.rounds + 10 and bundle.booster != updated.booster
    before = Predictor.from_bundle(bundle).predict_proba(valid)
    after = Predictor.from_bundle(updated).predict_proba(valid)
    y = valid["label"].to_numpy()

    def loss(p):
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    assert loss(after) < loss(before), "the new trees count when scoring"
    loaded = ModelBundle.load(updated.save(tmp_path / "b"))
    np.testing.assert_array_equal(Predictor.from_bundle(loaded).predict_proba(valid), after)


def test_hyperparameters_come_from_the_gbdt_section(tmp_path):
    cfg = make_config(tmp_path, gbdt={"learning_rate": 0.05, "max_depth": 4, "rounds": 200})
    hp = gbdt_hyperparameters(cfg)
    assert (hp["learning_rate"], hp["max_depth"], hp["rounds"]) == (0.05, 4, 200)
    assert set(SEARCHABLE) <= set(hp)


def test_the_search_space_is_what_a_run_can_override():
    from app.training.tune_gbdt import GBDT_SPACE

    assert set(GBDT_SPACE) == set(SEARCHABLE)


def test_model_config_defaults_and_bad_family(tmp_path):
    cfg = make_config(tmp_path)
    assert cfg.model.family == "mlp" and cfg.gbdt.num_workers >= 1 and not cfg.gbdt.use_gpu
    with pytest.raises(ConfigError, match="model.family"):
        make_config(tmp_path, model={"family": "catboost"})


def test_a_missing_library_is_one_line_naming_the_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_xgboost(name, *args, **kwargs):
        if name == "xgboost":
            raise ImportError("No module named 'xgboost'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xgboost)
    with pytest.raises(ConfigError) as info:  # the CLI prints a ConfigError as one `error:` line
        trees.xgboost()
    assert "\n" not in str(info.value) and "pip install 'xgboost>=3'" in str(info.value)


def test_gpu_trees_on_a_cluster_without_gpu_are_refused_before_any_worker(tmp_path, monkeypatch):
    import ray

    from app.training import train_gbdt

    cfg = make_config(tmp_path, model={"family": "gbdt"}, gbdt={"use_gpu": True})
    monkeypatch.setattr(train_gbdt, "connect", lambda _: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    with pytest.raises(ConfigError, match="gbdt.use_gpu.*no GPU"):
        train_gbdt.check_gpu(cfg)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 1.0})
    train_gbdt.check_gpu(cfg)  # a GPU is there: no refusal


def test_fit_candidate_refuses_an_unresolved_auto_family(tmp_path):
    from app.training.fit import fit_candidate

    cfg = make_config(tmp_path, model={"family": "auto"})
    with pytest.raises(ConfigError, match="resolved by a search"):
        fit_candidate(cfg, splits=None)


# ------------------------------------------------------------------ the search verdict


def _best(mlp: float, gbdt: float) -> dict:
    return {
        "mlp": {"overrides": {"lr": 0.003, "width": 64}, "val_loss": mlp},
        "gbdt": {"overrides": {"learning_rate": 0.07, "max_depth": 4}, "val_loss": gbdt},
    }


def test_the_verdict_is_the_family_with_the_lower_validation_log_loss(tmp_path):
    cfg = make_config(tmp_path)
    assert verdict.choose(cfg, _best(0.50, 0.48)).family == "gbdt"
    assert verdict.choose(cfg, _best(0.47, 0.48)).family == "mlp"
    assert verdict.choose(cfg, _best(0.47, float("nan"))).family == "mlp"
    found = verdict.choose(cfg, _best(0.50, 0.48))
    assert found.for_family("auto") == ("gbdt", {"learning_rate": 0.07, "max_depth": 4})
    assert found.for_family("mlp") == ("mlp", {"lr": 0.003, "width": 64})


def test_the_verdict_survives_a_new_process_for_the_same_problem_only(tmp_path, caplog):
    cfg = make_config(tmp_path)
    assert verdict.load(cfg) is None
    verdict.save(cfg, verdict.choose(cfg, _best(0.50, 0.48)))
    again = verdict.load(cfg)
    assert again is not None and again.family == "gbdt" and again.best == _best(0.50, 0.48)
    other = make_config(tmp_path, features={"ttl_days": 7})  # another problem definition
    assert verdict.load(other) is None
    moved = make_config(tmp_path, dataset={"source": "/elsewhere/raw/"})  # same data, other path
    assert verdict.load(moved) is not None
    state.put(state.state_store(cfg.storage), verdict.key(cfg), b"{broken")
    with caplog.at_level(logging.WARNING):
        assert verdict.load(cfg) is None
    assert "unreadable" in caplog.text


def test_training_follows_the_verdict_for_auto_and_its_family_otherwise(tmp_path):
    from app.pipeline import resolve_training

    auto = make_config(tmp_path, model={"family": "auto"})
    verdict.save(auto, verdict.choose(auto, _best(0.50, 0.48)))
    family, overrides, source = resolve_training(auto, splits=None)
    assert family == "gbdt" and overrides == {"learning_rate": 0.07, "max_depth": 4}
    assert source.startswith("search (")
    mlp = make_config(tmp_path, model={"family": "mlp"})
    assert resolve_training(mlp, splits=None)[:2] == ("mlp", {"lr": 0.003, "width": 64})
    assert resolve_training(mlp, splits=None, overrides={"epochs": 1}) == ("mlp", {"epochs": 1}, "caller")
    assert resolve_training(auto, splits=None, family="mlp", overrides={}) == ("mlp", {}, "caller")


# ------------------------------------------------------------------ in process or on Ray Train


def test_the_trainer_follows_the_training_rows_and_gpu_trees_go_to_ray_train(tmp_path):
    from app.training.train_gbdt import IN_PROCESS, RAY_TRAIN, choose_trainer

    cfg = make_config(tmp_path, gbdt={"in_process_rows": 1000})
    assert choose_trainer(cfg, 999) == IN_PROCESS and choose_trainer(cfg, 1000) == RAY_TRAIN
    assert choose_trainer(make_config(tmp_path, gbdt={"in_process_rows": 0}), 10) == RAY_TRAIN
    gpu = make_config(tmp_path, gbdt={"in_process_rows": 1000, "use_gpu": True})
    assert choose_trainer(gpu, 10) == RAY_TRAIN  # the driver need not be on a GPU node
    assert make_config(tmp_path).gbdt.in_process_rows > 0  # small sets skip Ray Train by default


def test_a_small_training_set_is_boosted_in_process_and_the_bundle_records_it(tmp_path):
    """No Ray at all: the whole candidate (trees, holdout metrics, baseline) from the driver."""
    from app.training.dataset import Splits
    from app.training.fit import fit_candidate
    from tests.helpers import model_inputs

    cfg = make_config(tmp_path, model={"family": "gbdt"}, gbdt={"rounds": 60})
    splits = Splits(*(model_inputs(cfg, n, seed=s) for n, s in ((3000, 0), (800, 1), (800, 2))))
    bundle = fit_candidate(cfg, splits)
    training = bundle.metrics["training"]
    assert training["trainer"] == "in-process" and bundle.lineage["trainer"] == "in-process"
    assert 1 <= training["rounds"] <= 60 and len(training["history"]) >= training["rounds"]
    assert bundle.lineage["checkpoint"] is None
    assert bundle.metrics["holdout"]["auc"] > bundle.metrics["baseline_hgb"]["auc"] - 0.03


def test_a_config_that_says_nothing_about_the_model_gets_trees(tmp_path):
    from app.config import parse_config

    cfg = parse_config({"dataset": {"numeric": ["x"]}, "storage": {"root": str(tmp_path)}}, environ={})
    assert cfg.model.family == "gbdt" and cfg.model.min_class_rows >= 1
    assert make_config(tmp_path).model.family == "mlp"  # the demo's config names its family
