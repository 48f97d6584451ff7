"""Baselines on the same split as the torch model: scikit-learn's HistGradientBoosting.

Fed the preprocessor's encoding (raw-scale numerics with NaN, categorical codes marked as
categorical), so the comparison is about the learner, not the features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from app.model.preprocess import Preprocessor


def tree_matrix(df: pd.DataFrame, pre: Preprocessor) -> np.ndarray:
    numeric = np.column_stack(
        [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in pre.numeric]
    )
    codes = pre.transform_batch(df)["categorical"].astype(float)
    return np.hstack([numeric, codes])


# HistGradientBoosting refuses a categorical feature with more levels than its bins (255).
MAX_HGB_LEVELS = 255


def baseline_categorical(pre: Preprocessor) -> list[bool]:
    """Which columns of `tree_matrix` HistGradientBoosting takes as categorical: the
    preprocessor's categoricals (their codes, the unknown code included), except one with more
    levels than it can bin, which it takes as an ordered code instead of refusing to fit."""
    fits = [len(pre.vocab_[c]) + 1 <= MAX_HGB_LEVELS for c in pre.categorical]
    return [False] * len(pre.numeric) + fits


def hgb_baseline(
    train: pd.DataFrame, holdout: pd.DataFrame, pre: Preprocessor, label: str, *, seed: int = 0
) -> np.ndarray:
    """Fit on the training split; return holdout probabilities."""
    categorical = baseline_categorical(pre)
    model = HistGradientBoostingClassifier(
        categorical_features=categorical, random_state=seed, early_stopping=True, validation_fraction=0.1
    )
    # One OpenMP thread: beside Ray's processes on two shared cores, scikit-learn's threads spin
    # against them, and the baseline took 30-64 s on 4k rows instead of 0.7 s (one thread).
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(tree_matrix(train, pre), train[label].to_numpy(dtype=int))
        return model.predict_proba(tree_matrix(holdout, pre))[:, 1]
