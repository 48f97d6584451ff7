"""Predictor: a model bundle ready to score feature rows — the one inference path.

Evaluation, the registry gate, online learning, batch scoring and serving all score through
`Predictor.from_bundle(...)`, so a model is never scored two different ways, whatever its
family: the preprocessor's `transform_batch`, then the family's model (the torch MLP or the
XGBoost trees), float64 probabilities out. The model is built once, at construction, not per
call (no Ray, no HTTP here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from app.model import trees
from app.model.bundle import ModelBundle
from app.model.explain import Explanation, mlp_explanation, tree_explanation
from app.model.net import TabularMLP, predict_proba


@dataclass
class Predictor:
    bundle: ModelBundle
    version: int = 0  # the registry version, 0 for a bundle not (yet) registered
    threshold: float = 0.5

    def __post_init__(self) -> None:
        model = self.bundle.model()  # built once, not per request
        self.net: TabularMLP | None = model if self.family == "mlp" else None
        self.booster = model if self.family == trees.FAMILY else None

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, *, version: int = 0, threshold: float = 0.5) -> Predictor:
        return cls(bundle, version, threshold)

    @property
    def features(self) -> list[str]:
        return self.bundle.features

    @property
    def family(self) -> str:
        return self.bundle.family

    def predict_proba(self, frame: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """Positive-class probability (float64) per row of a frame, or of equally long columns,
        holding the model's features."""
        arrays = self.bundle.preprocessor.transform_batch(frame)
        if self.booster is not None:
            return trees.predict_proba(self.booster, trees.tree_inputs(arrays))
        with torch.inference_mode():
            return predict_proba(self.net, arrays["numeric"], arrays["categorical"])

    def explain(self, frame: pd.DataFrame | Mapping[str, np.ndarray]) -> Explanation:
        """Each model feature's share of every row's logit (app/model/explain.py): exact for
        trees, integrated gradients for the MLP."""
        pre = self.bundle.preprocessor
        arrays = pre.transform_batch(frame)
        names = [*pre.numeric, *pre.categorical]
        if self.booster is not None:
            return tree_explanation(self.booster, trees.tree_inputs(arrays), self.bundle.spec)
        return mlp_explanation(self.net, arrays["numeric"], arrays["categorical"], names)
