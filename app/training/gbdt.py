"""Gradient-boosted trees without Ray: parameters and one boosting run with early stopping.

The distributed run (every Ray Train worker), the search trials (one process each) and the
benchmark's single-process baseline all call `boost`, so they train the same way: binary log
loss, the hist method with native categorical splits, and early stopping on the validation
split that keeps the best round's trees.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from app.config import AppConfig
from app.model import trees
from app.model.bundle import ModelBundle
from app.model.preprocess import Preprocessor
from app.model.trees import TreeSpec

# What a search may override; the rest of a run's settings come from the config.
SEARCHABLE = ("learning_rate", "max_depth", "reg_lambda", "min_child_weight")
# For a bundle whose spec lacks a setting: the settings trees were trained with before specs
# stored them (the gbdt section's defaults then).
DEFAULTS = {"learning_rate": 0.1, "max_depth": 6, "reg_lambda": 1.0, "min_child_weight": 1.0}


@dataclass
class BoostResult:
    booster: object  # xgboost.Booster, the best round's trees
    history: list[dict] = field(default_factory=list)  # {"round", "val_loss"} per round
    best_val_loss: float = float("nan")
    best_iteration: int = -1


def gbdt_hyperparameters(cfg: AppConfig) -> dict:
    """A gbdt run's settings from the `gbdt` section (overridable per run, e.g. by a search)."""
    m = cfg.gbdt
    return {
        "learning_rate": m.learning_rate,
        "max_depth": m.max_depth,
        "reg_lambda": m.reg_lambda,
        "min_child_weight": m.min_child_weight,
        "rounds": m.rounds,
        "early_stopping_rounds": m.early_stopping_rounds,
        "seed": 0,
    }


def xgb_params(hp: dict, *, nthread: int, use_gpu: bool = False) -> dict:
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",  # the metric the MLP minimises too: families compare on it
        "tree_method": "hist",
        "device": "cuda" if use_gpu else "cpu",
        "eta": float(hp["learning_rate"]),
        "max_depth": int(hp["max_depth"]),
        "lambda": float(hp["reg_lambda"]),
        "min_child_weight": float(hp["min_child_weight"]),
        "nthread": int(nthread),
        "seed": int(hp.get("seed", 0)),
    }


def arrays_dmatrix(arrays: dict[str, np.ndarray], spec: TreeSpec):
    """A DMatrix from preprocessor outputs plus a "label" array."""
    return trees.dmatrix(trees.tree_inputs(arrays), spec, label=arrays["label"])


def frame_arrays(df, pre: Preprocessor, label: str) -> dict[str, np.ndarray]:
    return {**pre.transform_batch(df), "label": df[label].to_numpy(dtype=np.float32)}


def boost(
    hp: dict,
    dtrain,
    dvalid,
    *,
    nthread: int = 1,
    use_gpu: bool = False,
    callbacks: Sequence = (),
    start=None,
) -> BoostResult:
    """Boost up to `hp["rounds"]` rounds (fewer when resuming from `start`), stopping after
    `early_stopping_rounds` without a better validation log loss; keeps the best round's trees.
    `callbacks` run after early stopping, so they see (and checkpoint) the trimmed booster."""
    xgb = trees.xgboost()
    done = 0 if start is None else start.num_boosted_rounds()
    stopping = xgb.callback.EarlyStopping(
        rounds=int(hp["early_stopping_rounds"]), data_name="valid", metric_name="logloss", save_best=True
    )
    log: dict = {}
    booster = xgb.train(
        xgb_params(hp, nthread=nthread, use_gpu=use_gpu),
        dtrain,
        num_boost_round=max(1, int(hp["rounds"]) - done),
        evals=[(dvalid, "valid")],
        evals_result=log,
        verbose_eval=False,
        callbacks=[stopping, *callbacks],
        xgb_model=start,
    )
    losses = log.get("valid", {}).get("logloss", [])
    best = int(booster.best_iteration) if booster.best_iteration is not None else len(losses) - 1
    return BoostResult(
        booster=booster,
        history=[{"round": done + i, "val_loss": float(v)} for i, v in enumerate(losses)],
        best_val_loss=float(booster.best_score) if booster.best_score is not None else float("nan"),
        best_iteration=best,
    )


def tree_spec(pre: Preprocessor, hp: dict, booster) -> TreeSpec:
    """The spec stored beside a trained booster: inputs, the run's settings, rounds kept."""
    best = booster.best_iteration
    return TreeSpec.for_preprocessor(
        pre,
        params={k: hp[k] for k in (*SEARCHABLE, "rounds", "early_stopping_rounds") if k in hp},
        best_iteration=-1 if best is None else int(best),
        rounds=int(booster.num_boosted_rounds()),
    )


def continue_boosting(
    bundle: ModelBundle, frame, labels: np.ndarray, *, rounds: int = 10, seed: int = 0
) -> ModelBundle:
    """A copy of a tree bundle with `rounds` more trees fitted to (frame, labels).

    XGBoost's training continuation: the new trees fit the residuals of the current model on
    the new rows, with the run's own learning rate; the preprocessor and vocabulary stay as
    they are. The trees' counterpart of fine-tuning an MLP for a few passes (online learning)."""
    xgb = trees.xgboost()
    hp = {**DEFAULTS, **bundle.spec.params, "seed": seed}
    arrays = bundle.preprocessor.transform_batch(frame)
    data = trees.dmatrix(trees.tree_inputs(arrays), bundle.spec, label=np.asarray(labels, dtype=np.float32))
    booster = xgb.train(
        xgb_params(hp, nthread=1), data, num_boost_round=int(rounds), xgb_model=bundle.model()
    )
    booster.set_attr(best_iteration=None, best_score=None)  # every tree counts, the new ones too
    updated = copy.copy(bundle)
    updated.booster = trees.booster_bytes(booster)
    updated.spec = replace(bundle.spec, rounds=int(booster.num_boosted_rounds()), best_iteration=-1)
    return updated
