"""The trees' search with Ray Tune: learning rate, depth, regularisation; rounds by early stopping.

Each trial is single-process xgboost (one CPU) on in-memory inputs: on tens of thousands of
rows a Ray Train worker group's start-up would cost more than the boosting, and the final run
trains the winner distributed. XGBoost's own early stopping on the validation split decides
each trial's rounds, and the trial reports its best round's validation log loss, the metric
the MLP trials report, so the two families compare directly. The configured settings are the
first trial, so the search never ends worse than the defaults.
"""

from __future__ import annotations

import pandas as pd
from ray import tune
from ray.tune.search import BasicVariantGenerator

from app.cluster.connection import connect
from app.config import AppConfig
from app.model import trees
from app.model.preprocess import Preprocessor
from app.model.trees import TreeSpec
from app.training.gbdt import SEARCHABLE, arrays_dmatrix, boost, frame_arrays, gbdt_hyperparameters
from app.training.tune import SearchResult, max_concurrent_trials, summarise, tune_run_config

GBDT_SPACE = {
    "learning_rate": tune.loguniform(0.02, 0.3),
    "max_depth": tune.choice([3, 4, 6, 8]),
    "reg_lambda": tune.loguniform(0.1, 10.0),
    "min_child_weight": tune.choice([1.0, 5.0, 20.0]),
}


def gbdt_trial(config: dict, *, base: dict, data: dict) -> None:
    spec = TreeSpec.from_dict(base["spec"])
    result = boost(
        {**base["hp"], **config},
        arrays_dmatrix(data["train"], spec),
        arrays_dmatrix(data["valid"], spec),
        nthread=1,
    )
    tune.report({"val_loss": result.best_val_loss, "rounds": result.best_iteration + 1})


def tune_gbdt(
    cfg: AppConfig,
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    pre: Preprocessor,
    *,
    num_samples: int | None = None,
) -> SearchResult:
    """Search the trees' learning rate, depth and regularisation; minimise validation log loss."""
    trees.xgboost()  # a missing library is one line, before any trial starts
    connect(cfg.ray)
    label = cfg.dataset.label
    hp = gbdt_hyperparameters(cfg)
    base = {"spec": TreeSpec.for_preprocessor(pre).to_dict(), "hp": hp}
    data = {"train": frame_arrays(train_df, pre, label), "valid": frame_arrays(valid_df, pre, label)}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(gbdt_trial, base=base, data=data), {"cpu": 1}),
        param_space=GBDT_SPACE,
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=num_samples or cfg.tune.num_samples,
            max_concurrent_trials=max_concurrent_trials(cfg, 1),
            search_alg=BasicVariantGenerator(
                points_to_evaluate=[{k: hp[k] for k in SEARCHABLE}], random_state=0
            ),
        ),
        run_config=tune_run_config(cfg, "tune-gbdt", family=trees.FAMILY),
    )
    return summarise(tuner.fit(), "val_loss", mode="min")
