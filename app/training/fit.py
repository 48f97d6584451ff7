"""Fit one candidate model end to end: preprocessor, distributed training, holdout metrics.

The family decides the trainer: the MLP on Ray Train's TorchTrainer (DDP), gradient-boosted
trees on its XGBoostTrainer (or in this process for a small training set, `gbdt.in_process_rows`);
both read the same splits and the same fitted preprocessor.
Returns a complete `ModelBundle` (model file, preprocessor, features, drift profile, metrics
with the HistGradientBoosting baseline on the same split, lineage); registering it is the
pipeline's decision.
"""

from __future__ import annotations

import functools
import subprocess

import pandas as pd

from app.config import AppConfig, ConfigError
from app.features.store import FeatureClient
from app.features.transforms import feature_spec
from app.model import trees
from app.model.bundle import FAMILIES, ModelBundle
from app.model.predictor import Predictor
from app.model.preprocess import Preprocessor
from app.model.profile import numeric_profile, reference_profile
from app.training.baselines import hgb_baseline
from app.training.dataset import Splits
from app.training.evaluate import binary_metrics, calibration_table, sliced_metrics
from app.training.train import train
from app.training.train_gbdt import check_gpu, train_gbdt


@functools.cache  # one process runs one checkout: a search's trials need not ask git each time
def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# Holdout rows explained for a version's global feature importance (mean |contribution|): enough
# for a stable ranking, and a small part of the training stage (the MLP's integrated gradients
# cost ~64 forward passes per row; 2,000 rows of exact tree contributions took 2.6 s at 30k rows).
IMPORTANCE_ROWS = 500


def evaluate_bundle(bundle: ModelBundle, splits: Splits, label: str) -> dict:
    y = splits.holdout[label].to_numpy(dtype=int)
    predictor = Predictor.from_bundle(bundle)
    p = predictor.predict_proba(splits.holdout)
    sample = splits.holdout.sample(min(len(splits.holdout), IMPORTANCE_ROWS), random_state=0)
    return {
        "holdout": binary_metrics(y, p),
        "calibration": calibration_table(y, p),
        "slices": sliced_metrics(splits.holdout, y, p, bundle.preprocessor.categorical),
        "importance": predictor.explain(sample).importance(),
    }


def make_preprocessor(cfg: AppConfig, train_df) -> Preprocessor:
    """Fitted on the training split only."""
    spec = feature_spec(cfg)
    return Preprocessor(list(spec.numeric), [*spec.time, *spec.categorical]).fit(
        train_df
    )  # calendar parts are categories


def preflight(cfg: AppConfig, family: str | None = None) -> None:
    """What would fail a tree run late, refused now: a missing xgboost, GPU trees without a GPU."""
    if (family or cfg.model.family) in (trees.FAMILY, "auto"):
        trees.xgboost()
        check_gpu(cfg)


def fit_candidate(
    cfg: AppConfig,
    splits: Splits,
    *,
    overrides: dict | None = None,
    parent_run: str | None = None,
    family: str | None = None,
) -> ModelBundle:
    """Train one model of `family` (default: `model.family`, which must not be "auto" here:
    the search resolves it) and evaluate it on the holdout."""
    family = family or cfg.model.family
    if family not in FAMILIES:
        raise ConfigError(
            f"model.family: {family!r} is not a trainable family ({', '.join(FAMILIES)}); "
            "'auto' is resolved by a search first (mlsys tune, or mlsys train/pipeline)"
        )
    spec = feature_spec(cfg)
    label = cfg.dataset.label
    pre = make_preprocessor(cfg, splits.train)
    common = {
        "preprocessor": pre,
        "features": spec.names,
        "feature_service": FeatureClient(cfg).service_name,
        "profile": reference_profile(splits.train, pre.numeric, pre.categorical),
    }
    if family == trees.FAMILY:
        result = train_gbdt(cfg, splits.train, splits.valid, pre, overrides=overrides)
        bundle = ModelBundle(spec=result.spec, state_dict=None, booster=result.booster, **common)
        training = {"rounds": result.spec.rounds, "trainer": result.trainer}
    else:
        result = train(cfg, splits.train, splits.valid, pre, overrides=overrides)
        bundle = ModelBundle(spec=result.spec, state_dict=result.state_dict, **common)
        training = {"epochs": len(result.history)}
    bundle.metrics = evaluate_bundle(bundle, splits, label)
    # The score distribution on the holdout: the reference for prediction drift.
    bundle.profile["score"] = numeric_profile(
        pd.Series(Predictor.from_bundle(bundle).predict_proba(splits.holdout))
    )
    y = splits.holdout[label].to_numpy(dtype=int)
    bundle.metrics["baseline_hgb"] = binary_metrics(y, hgb_baseline(splits.train, splits.holdout, pre, label))
    bundle.metrics["training"] = {
        "best_val_loss": result.best_val_loss,
        "seconds": result.seconds,
        **training,
        # The learning curve (per epoch for the MLP, per boosting round for trees).
        "history": [
            {k: float(h[k]) for k in ("epoch", "round", "train_loss", "val_loss") if k in h}
            for h in result.history
        ],
    }
    bundle.lineage = {
        "data_fingerprint": splits.fingerprint(),
        "config_hash": cfg.fingerprint(),
        "git_sha": git_sha(),
        "parent_run": parent_run or "",
        "checkpoint": result.checkpoint_path,
        "rows": f"{len(splits.train)}/{len(splits.valid)}/{len(splits.holdout)}",
        "trainer": training.get("trainer", "ray-train"),
    }
    return bundle
