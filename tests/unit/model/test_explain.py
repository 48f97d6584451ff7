"""Explanations: contributions add up to each row's logit, and a feature the label never depends
on gets next to nothing, for both families (through `Predictor.explain`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from app.model.bundle import ModelBundle
from app.model.net import ModelSpec, TabularMLP
from app.model.predictor import Predictor
from app.model.preprocess import Preprocessor
from app.model.trees import TreeSpec, booster_bytes
from app.training.gbdt import arrays_dmatrix, boost, tree_spec
from app.training.loop import array_batches, train_epoch

NUMERIC, CATEGORICAL = ["signal", "noise"], ["colour"]


def toy_frame(n: int, seed: int) -> pd.DataFrame:
    """The label depends on `signal` and `colour`, never on `noise`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
        }
    )
    logit = 2.5 * frame["signal"] + frame["colour"].map({"red": 1.5, "green": 0.0, "blue": -1.5})
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


@pytest.fixture(scope="module")
def data():
    frame = toy_frame(4000, seed=0)
    pre = Preprocessor(NUMERIC, CATEGORICAL).fit(frame)
    return frame, pre, {**pre.transform_batch(frame), "label": frame["label"].to_numpy(dtype="float32")}


def bundle(pre, spec, **kwargs) -> ModelBundle:
    return ModelBundle(
        spec=spec, preprocessor=pre, features=NUMERIC + CATEGORICAL, feature_service="toy", **kwargs
    )


@pytest.fixture(scope="module")
def mlp(data):
    frame, pre, arrays = data
    torch.manual_seed(0)
    spec = ModelSpec(
        n_numeric=pre.n_numeric, cardinalities=tuple(pre.cardinalities), width=16, depth=1, dropout=0.0
    )
    net = TabularMLP(spec)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for epoch in range(8):
        train_epoch(net, array_batches(arrays, 256, rng=np.random.default_rng(epoch)), optimizer)
    return Predictor.from_bundle(bundle(pre, spec, state_dict=net.state_dict()))


@pytest.fixture(scope="module")
def gbdt(data):
    frame, pre, arrays = data
    hp = {"learning_rate": 0.3, "max_depth": 3, "reg_lambda": 1.0, "min_child_weight": 1.0, "seed": 0}
    dtrain = arrays_dmatrix(arrays, TreeSpec.for_preprocessor(pre))
    booster = boost({**hp, "rounds": 30, "early_stopping_rounds": 30}, dtrain, dtrain).booster
    spec = tree_spec(pre, hp, booster)
    return Predictor.from_bundle(bundle(pre, spec, state_dict=None, booster=booster_bytes(booster)))


@pytest.mark.parametrize("family", ["mlp", "gbdt"])
def test_contributions_add_up_to_each_rows_logit(family, request):
    predictor = request.getfixturevalue(family)
    rows = toy_frame(300, seed=1)
    rows.loc[:9, "signal"] = np.nan  # a missing numeric is explained too (its flag counts to it)
    explanation = predictor.explain(rows)
    assert explanation.features == NUMERIC + CATEGORICAL
    total = explanation.base + explanation.contributions.sum(axis=1)
    tolerance = 1e-4 if family == "gbdt" else 0.05  # exact for trees; an integral's error for the net
    np.testing.assert_allclose(total, logit(predictor.predict_proba(rows)), atol=tolerance)


@pytest.mark.parametrize("family", ["mlp", "gbdt"])
def test_a_feature_the_label_never_depends_on_gets_next_to_nothing(family, request):
    predictor = request.getfixturevalue(family)
    importance = predictor.explain(toy_frame(500, seed=2)).importance()
    assert importance["noise"] < 0.1 * importance["signal"], importance
    assert importance["colour"] > 0.1 * importance["signal"], importance


def test_one_rows_explanation_is_plain_values(gbdt):
    row = gbdt.explain(toy_frame(3, seed=3)).row(0)
    assert set(row) == {"base", "contributions"} and set(row["contributions"]) == set(NUMERIC + CATEGORICAL)
    assert all(isinstance(v, float) for v in row["contributions"].values())
    assert gbdt.explain(toy_frame(3, seed=3).iloc[:0]).contributions.shape == (0, 3)
