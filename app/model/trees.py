"""Gradient-boosted trees as an artifact: their inputs, spec, portable file and scores.

The trees read the same preprocessor outputs as the MLP: the scaled numerics (NaN where the
missing indicator is set, so XGBoost learns its own default direction) and the categorical
codes, marked as categorical ("c") so XGBoost splits on them natively. The booster is stored
in XGBoost's own UBJSON format (`save_raw("ubj")`), never pickle. xgboost is imported only when
a tree model is built or loaded, so an MLP-only install never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.config import ConfigError
from app.model.preprocess import Preprocessor

FAMILY = "gbdt"
INSTALL_HINT = "pip install 'xgboost>=3'"


class MissingLibrary(ConfigError):
    """A configured model family whose library is not installed (one line: what to install)."""


def xgboost():
    """The xgboost module, or one clear line telling what to install."""
    try:
        import xgboost as xgb
    except ImportError:
        raise MissingLibrary(
            f"model.family {FAMILY!r} needs the xgboost package, which is not installed: {INSTALL_HINT}"
        ) from None
    return xgb


@dataclass(frozen=True)
class TreeSpec:
    """What a tree bundle needs besides the booster: its inputs and how it was trained."""

    feature_names: tuple[str, ...]
    feature_types: tuple[str, ...]  # "q" numeric, "c" categorical code
    params: dict = field(default_factory=dict)  # the XGBoost parameters of the run
    best_iteration: int = -1
    rounds: int = 0  # trees in the stored booster (early stopping kept the best round's)

    def to_dict(self) -> dict:
        return {
            "feature_names": list(self.feature_names),
            "feature_types": list(self.feature_types),
            "params": dict(self.params),
            "best_iteration": self.best_iteration,
            "rounds": self.rounds,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TreeSpec:
        return cls(
            feature_names=tuple(str(n) for n in d["feature_names"]),
            feature_types=tuple(str(t) for t in d["feature_types"]),
            params=dict(d.get("params", {})),
            best_iteration=int(d.get("best_iteration", -1)),
            rounds=int(d.get("rounds", 0)),
        )

    @classmethod
    def for_preprocessor(cls, pre: Preprocessor, **kwargs) -> TreeSpec:
        return cls(
            feature_names=(*pre.numeric, *pre.categorical),
            feature_types=("q",) * len(pre.numeric) + ("c",) * len(pre.categorical),
            **kwargs,
        )


def tree_inputs(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """float32 [n, numeric + categorical] from `Preprocessor.transform_batch` outputs.

    The numeric block is scaled values then missing indicators; trees take the values with
    NaN for missing (their own default branch) instead of the indicator columns."""
    numeric, codes = arrays["numeric"], arrays["categorical"]
    k = numeric.shape[1] // 2
    values = np.where(numeric[:, k:] > 0, np.float32(np.nan), numeric[:, :k])
    return np.hstack([values.astype(np.float32, copy=False), codes.astype(np.float32)])


def dmatrix(x: np.ndarray, spec: TreeSpec, label: np.ndarray | None = None):
    """An xgboost DMatrix with the spec's feature names and categorical types."""
    xgb = xgboost()
    return xgb.DMatrix(
        x,
        label=label,
        feature_names=list(spec.feature_names),
        feature_types=list(spec.feature_types),
        enable_categorical=True,
    )


def booster_bytes(booster) -> bytes:
    """The booster in XGBoost's portable UBJSON format."""
    return bytes(booster.save_raw("ubj"))


def load_booster(raw: bytes, spec: TreeSpec):
    """A booster from its UBJSON bytes, checked against the spec; one thread for scoring.

    One thread: a serving replica scores small batches, where OpenMP's thread start and spin
    cost far more than the trees (55 ms vs 0.9 ms for one row on a busy 2-core machine)."""
    xgb = xgboost()
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    if booster.num_features() != len(spec.feature_names):
        raise ValueError(
            f"the trees read {booster.num_features()} features, the spec names {len(spec.feature_names)}"
        )
    booster.feature_names = list(spec.feature_names)
    booster.feature_types = list(spec.feature_types)
    booster.set_param({"nthread": 1})
    return booster


def predict_proba(booster, x: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class, in float64 (as the MLP path returns them)."""
    if len(x) == 0:
        return np.zeros(0)
    return np.asarray(booster.inplace_predict(x), dtype=np.float64)
