"""Label-free performance estimates from a model's own scores, before any outcome arrives.

Confidence-based performance estimation (CBPE; the method NannyML implements, described by
Kivimäki et al., "Confidence-based Estimators for Predictive Performance in Model
Monitoring", 2024): if a score is a calibrated probability p = P(y = 1 | x), then each
prediction is correct with probability p when its label is 1 and 1 - p when it is 0, so

    E[accuracy at threshold t] = mean(p_i if p_i >= t else 1 - p_i),

and every threshold has an expected confusion matrix, whence an expected ROC curve:

    E[TPR(t)] = sum(p_j for p_j >= t) / sum(p_j),   E[FPR(t)] = sum(1 - p_j for p_j >= t) / sum(1 - p_j),

and the expected AUC is the area under it. The estimates hold while the scores stay
calibrated on live traffic, i.e. under covariate shift but not when the relation between
features and outcome changes (concept drift): outcomes, when they come, remain the judge.
"""

from __future__ import annotations

import numpy as np


def expected_accuracy(scores, threshold: float = 0.5) -> float | None:
    p = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    if p.size == 0:
        return None
    return float(np.mean(np.where(p >= threshold, p, 1.0 - p)))


def expected_auc(scores) -> float | None:
    """The area under the expected ROC curve (ties share one step, as a ROC curve's do)."""
    p = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    positives, negatives = p.sum(), (1.0 - p).sum()
    if p.size == 0 or positives <= 0 or negatives <= 0:
        return None
    order = np.argsort(-p, kind="stable")
    sorted_p = p[order]
    last_of_tie = np.r_[np.diff(sorted_p) != 0, True]
    tpr = np.r_[0.0, np.cumsum(sorted_p)[last_of_tie] / positives]
    fpr = np.r_[0.0, np.cumsum(1.0 - sorted_p)[last_of_tie] / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # the trapezoid rule


def estimates(scores, threshold: float = 0.5) -> dict:
    return {"accuracy": expected_accuracy(scores, threshold), "auc": expected_auc(scores)}
