"""A model trained in-process (no Ray) on the built-in generator, and helpers to score raw rows.

The model is trained once for the folder from the same public pieces the pipeline uses
(features, preprocessor, network, training epoch, bundle) and scored only through
`Predictor.from_bundle(bundle).predict_proba(...)`, the project's one inference path; raw rows become
model inputs through `raw_rows_to_frame`, the serving path.

What the tests may expect follows from `app.data.synthetic._label_logit`: the label's logit
rises with log income (+0.9 per unit) and score (+2.0 per unit), on weekends (+0.6) and in the
evening hours 18-22 (+0.4); it falls slightly with age (-0.01 per year); country adds
US +0.3 ... IN -0.4; women aged 25-34 get +1.0 and men aged 50-64 get -1.0 (the age bucket x
gender cross). Month, minute, entity id and gender outside those two age windows have no effect.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch

from app.data.synthetic import generate
from app.features.transforms import add_features, feature_spec
from app.model.bundle import ModelBundle
from app.model.net import ModelSpec, TabularMLP
from app.model.predictor import Predictor
from app.model.preprocess import Preprocessor
from app.serving.scoring import raw_rows_to_frame
from app.training.loop import array_batches, train_epoch
from tests.configs import make_config
from tests.model.probes import CLEAN, START

TRAIN_ROWS, HOLDOUT_ROWS, PROBE_ROWS = 25_000, 10_000, 4_000
EPOCHS, WIDTH, DEPTH, LR, BATCH = 6, 32, 2, 3e-3, 256
SEED = 0

Score = Callable[[pd.DataFrame], np.ndarray]


@pytest.fixture(scope="package")
def model_cfg(tmp_path_factory):
    return make_config(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="package")
def bundle(model_cfg) -> ModelBundle:
    cfg = model_cfg
    frame = add_features(generate(TRAIN_ROWS, seed=SEED, start=START, defects=CLEAN), cfg)
    spec = feature_spec(cfg)
    pre = Preprocessor(list(spec.numeric), [*spec.time, *spec.categorical]).fit(frame)
    torch.manual_seed(SEED)
    model_spec = ModelSpec(
        n_numeric=pre.n_numeric, cardinalities=tuple(pre.cardinalities), width=WIDTH, depth=DEPTH
    )
    net = TabularMLP(model_spec)
    arrays = {**pre.transform_batch(frame), "label": frame[cfg.dataset.label].to_numpy(dtype="float32")}
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    rng = np.random.default_rng(SEED)
    for _ in range(EPOCHS):
        train_epoch(net, array_batches(arrays, BATCH, rng=rng), optimizer)
    return ModelBundle(
        spec=model_spec,
        state_dict=net.state_dict(),
        preprocessor=pre,
        features=spec.names,
        feature_service=f"model_v{cfg.features.service_version}",
    )


@pytest.fixture(scope="package")
def predictor(bundle) -> Predictor:
    return Predictor.from_bundle(bundle)


@pytest.fixture(scope="package")
def holdout() -> pd.DataFrame:
    """Fresh raw rows (another seed, same period) with their labels."""
    return generate(HOLDOUT_ROWS, seed=SEED + 1, start=START, defects=CLEAN)


@pytest.fixture(scope="package")
def probe(holdout) -> pd.DataFrame:
    """Raw request rows to perturb (the dataset's columns, no label)."""
    return holdout.drop(columns=["label"]).head(PROBE_ROWS).reset_index(drop=True)


@pytest.fixture(scope="package")
def score(predictor, model_cfg) -> Score:
    """Score raw rows as a request would be: dicts -> `raw_rows_to_frame` -> `Predictor.predict_proba`."""

    def run(rows: pd.DataFrame | list[dict]) -> np.ndarray:
        records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
        return predictor.predict_proba(raw_rows_to_frame(records, model_cfg))

    return run
