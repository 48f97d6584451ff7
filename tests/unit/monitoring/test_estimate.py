"""Label-free estimates (CBPE) against simulations whose true accuracy and AUC are known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from app.monitoring.estimate import expected_accuracy, expected_auc


@pytest.mark.parametrize(("a", "b"), [(2, 3), (0.5, 0.5), (5, 1)])
def test_calibrated_scores_estimate_accuracy_and_auc_without_labels(a, b):
    """Outcomes drawn from the scores themselves (calibrated): the estimates match the
    realised figures within sampling noise, run after run, with no bias."""
    rng = np.random.default_rng(0)
    errors = {"accuracy": [], "auc": []}
    for _ in range(40):
        p = rng.beta(a, b, size=4000)
        y = (rng.random(p.size) < p).astype(int)
        errors["accuracy"].append(expected_accuracy(p) - np.mean((p >= 0.5) == y))
        errors["auc"].append(expected_auc(p) - roc_auc_score(y, p))
    for name, err in errors.items():
        err = np.asarray(err)
        assert abs(err.mean()) < 0.005, (name, err.mean())  # unbiased
        assert np.abs(err).max() < 0.03, (name, np.abs(err).max())  # each run within noise


def test_miscalibrated_scores_mislead_the_estimate_as_documented():
    """Outcomes from a different model than the scores (concept drift): the estimate keeps
    the scores' own view and misses the real accuracy."""
    rng = np.random.default_rng(1)
    p = rng.beta(2, 3, size=4000)
    y = (rng.random(p.size) < 1 - p).astype(int)  # the relation flipped
    assert expected_accuracy(p) - np.mean((p >= 0.5) == y) > 0.2


def test_degenerate_inputs_give_none_or_exact_values():
    assert expected_accuracy([]) is None and expected_auc([]) is None
    assert expected_auc([1.0, 1.0]) is None  # no expected negatives
    assert expected_accuracy([0.0, 1.0]) == 1.0
    assert expected_auc([0.0, 1.0]) == 1.0  # certain scores: a perfect ranking
    assert expected_auc([0.5, 0.5, 0.5]) == pytest.approx(0.5)
