"""Why a score is what it is: each model feature's additive share of a row's logit.

Both families answer in the same terms: per row, a `base` logit and one contribution per model
feature (the preprocessor's numerics, then its categoricals), with base + sum(contributions)
equal to the row's logit (the score is its sigmoid).
- Trees: XGBoost's exact TreeSHAP contributions (`pred_contribs`), the bias as the base.
- MLP: integrated gradients (captum) from an all-zeros input (every numeric at its training
  mean, no missing flags, zero embeddings) to the row; the sum matches up to the integral's
  approximation error, which `steps` bounds. A numeric's missing flag counts towards its feature,
  an embedding's dimensions towards their categorical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.model import trees
from app.model.net import TabularMLP

# Integral steps: the sum stays within a few hundredths of the logit (the ReLUs' kinks are what the
# approximation misses; tests/unit/model/test_explain.py checks 0.05).
IG_STEPS = 64


@dataclass(frozen=True)
class Explanation:
    """Per-row contributions [n, features] and base logits [n], in the model's feature order."""

    features: list[str]
    base: np.ndarray
    contributions: np.ndarray

    def row(self, i: int) -> dict:
        """One row's explanation as plain values (what /predict answers)."""
        return {
            "base": float(self.base[i]),
            "contributions": {f: float(c) for f, c in zip(self.features, self.contributions[i], strict=True)},
        }

    def importance(self) -> dict[str, float]:
        """Global importance: the mean absolute contribution of each feature over these rows."""
        mean = (
            np.abs(self.contributions).mean(axis=0)
            if len(self.contributions)
            else np.zeros(len(self.features))
        )
        return {f: float(v) for f, v in zip(self.features, mean, strict=True)}


def tree_explanation(booster, x: np.ndarray, spec: trees.TreeSpec) -> Explanation:
    """Exact contributions of the trees (one column per input, the last is the bias)."""
    if len(x) == 0:
        return Explanation(list(spec.feature_names), np.zeros(0), np.zeros((0, len(spec.feature_names))))
    contribs = booster.predict(trees.dmatrix(x, spec), pred_contribs=True)
    return Explanation(
        list(spec.feature_names), contribs[:, -1].astype(np.float64), contribs[:, :-1].astype(np.float64)
    )


def mlp_explanation(
    net: TabularMLP,
    numeric: np.ndarray,
    categorical: np.ndarray,
    features: list[str],
    *,
    steps: int = IG_STEPS,
) -> Explanation:
    """Integrated gradients of the logit over the net's joined input, summed per model feature."""
    from captum.attr import IntegratedGradients

    k = numeric.shape[1] // 2  # scaled values, then their missing flags
    widths = [emb.embedding_dim for emb in net.embeddings]
    if len(numeric) == 0:
        return Explanation(features, np.zeros(0), np.zeros((0, k + len(widths))))
    net.eval()
    with torch.no_grad():
        parts = [torch.from_numpy(numeric).float()]
        parts += [emb(torch.from_numpy(categorical[:, i])) for i, emb in enumerate(net.embeddings)]
        joined = torch.cat(parts, dim=1)
        base = net.mlp(torch.zeros_like(joined[:1])).squeeze(1).double().numpy()

    def logit(x: torch.Tensor) -> torch.Tensor:
        return net.mlp(x).squeeze(1)

    with torch.enable_grad():
        attributions = IntegratedGradients(logit).attribute(
            joined, baselines=torch.zeros_like(joined), n_steps=steps, internal_batch_size=4096
        )
    a = attributions.detach().double().numpy()
    columns = [a[:, i] + a[:, k + i] for i in range(k)]
    start = 2 * k
    for width in widths:
        columns.append(a[:, start : start + width].sum(axis=1))
        start += width
    return Explanation(features, np.repeat(base, len(a)), np.stack(columns, axis=1))
