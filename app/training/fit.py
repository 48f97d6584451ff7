"""Fit one candidate model end to end: preprocessor, distributed training, holdout metrics.

Returns a complete `ModelBundle` (weights, preprocessor, features, drift profile, metrics
with the HistGradientBoosting baseline on the same split, lineage); registering it is the
pipeline's decision.
"""

from __future__ import annotations

import subprocess

import pandas as pd

from app.config import AppConfig
from app.features.store import FeatureClient
from app.features.transforms import feature_spec
from app.model.bundle import ModelBundle
from app.model.predictor import Predictor
from app.model.preprocess import Preprocessor
from app.model.profile import numeric_profile, reference_profile
from app.training.baselines import hgb_baseline
from app.training.dataset import Splits
from app.training.evaluate import binary_metrics, calibration_table, sliced_metrics
from app.training.train import train


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def evaluate_bundle(bundle: ModelBundle, splits: Splits, label: str) -> dict:
    y = splits.holdout[label].to_numpy(dtype=int)
    p = Predictor.from_bundle(bundle).score(splits.holdout)
    return {
        "holdout": binary_metrics(y, p),
        "calibration": calibration_table(y, p),
        "slices": sliced_metrics(splits.holdout, y, p, bundle.preprocessor.categorical),
    }


def make_preprocessor(cfg: AppConfig, train_df) -> Preprocessor:
    """Fitted on the training split only."""
    spec = feature_spec(cfg)
    return Preprocessor(list(spec.numeric), [*spec.time, *spec.categorical]).fit(
        train_df
    )  # calendar parts are categories


def fit_candidate(
    cfg: AppConfig, splits: Splits, *, overrides: dict | None = None, parent_run: str | None = None
) -> ModelBundle:
    spec = feature_spec(cfg)
    label = cfg.dataset.label
    pre = make_preprocessor(cfg, splits.train)
    result = train(cfg, splits.train, splits.valid, pre, overrides=overrides)
    bundle = ModelBundle(
        spec=result.spec,
        state_dict=result.state_dict,
        preprocessor=pre,
        features=spec.names,
        feature_service=FeatureClient(cfg).service_name,
        profile=reference_profile(splits.train, pre.numeric, pre.categorical),
    )
    bundle.metrics = evaluate_bundle(bundle, splits, label)
    # The score distribution on the holdout: the reference for prediction drift.
    bundle.profile["score"] = numeric_profile(pd.Series(Predictor.from_bundle(bundle).score(splits.holdout)))
    y = splits.holdout[label].to_numpy(dtype=int)
    bundle.metrics["baseline_hgb"] = binary_metrics(y, hgb_baseline(splits.train, splits.holdout, pre, label))
    bundle.metrics["training"] = {
        "best_val_loss": result.best_val_loss,
        "seconds": result.seconds,
        "epochs": len(result.history),
        # The learning curve (the MLflow run has the same per-epoch metrics).
        "history": [
            {k: float(h[k]) for k in ("epoch", "train_loss", "val_loss") if k in h} for h in result.history
        ],
    }
    bundle.lineage = {
        "data_fingerprint": splits.fingerprint(),
        "config_hash": cfg.fingerprint(),
        "git_sha": git_sha(),
        "parent_run": parent_run or "",
        "checkpoint": result.checkpoint_path,
        "rows": f"{len(splits.train)}/{len(splits.valid)}/{len(splits.holdout)}",
    }
    return bundle
