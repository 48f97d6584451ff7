"""Rolling labelled metrics per variant: the window's metrics, the band of the version that
scored it, and the run of decayed windows the retrain trigger reads."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from app.monitoring.bands import FIXED, PerformanceBand
from app.monitoring.performance import PerformanceTracker, decay_run, window_metrics
from app.training.evaluate import expected_calibration_error


def outcomes(n: int, *, seed: int, concept: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated scores and their outcomes; `concept`: the outcomes no longer follow the scores."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    y = (rng.uniform(size=n) < (1 - p if concept else p)).astype(int)
    return p, y


def test_window_metrics_are_sklearns_with_the_label_free_estimate_beside_them():
    p, y = outcomes(2000, seed=0)
    m = window_metrics(p, y)
    assert m["n"] == 2000 and m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p)) and m["accuracy"] == pytest.approx(
        np.mean((p >= 0.5) == y)
    )
    assert m["calibration_error"] == pytest.approx(expected_calibration_error(y, p))
    assert m["estimated_auc"] == pytest.approx(m["auc"], abs=0.03)  # calibrated: the estimate holds
    flipped = window_metrics(*outcomes(2000, seed=0, concept=True))
    assert flipped["auc"] < 0.3 and flipped["estimated_auc"] > 0.7  # concept drift: only labels show it
    assert window_metrics([0.3, 0.6], [1, 1])["auc"] is None and window_metrics([], [])["n"] == 0


BAND = PerformanceBand(auc_low=0.7, log_loss_high=None, kind=FIXED, reference_auc=0.75)


def test_a_variants_windows_are_judged_by_the_band_of_the_version_that_scored_them():
    asked = []

    def band_for(version):
        asked.append(version)
        return BAND if version == 1 else None

    tracker = PerformanceTracker(500, band_for)
    for i, (p, y) in enumerate([outcomes(500, seed=1), outcomes(500, seed=2, concept=True)]):
        for s, label in zip(p, y, strict=True):
            tracker.add("champion", 1, s, label, now=100.0 * i)
    window = tracker.windows()["champion"]
    assert window.window == "complete" and window.n == 500 and window.band == FIXED
    assert window.auc < 0.7 and window.decayed and window.auc_low == 0.7 and window.reference_auc == 0.75
    assert [(p.at, p.decayed) for p in tracker.history] == [(0.0, False), (100.0, True)]
    assert decay_run(tracker.history, "champion") == (1, 0.0) and decay_run(
        tracker.history, "challenger"
    ) == (0, 0.0)
    tracker.add("champion", 2, 0.9, 1)  # a new champion: a new window, the old report is not its
    partial = tracker.windows()["champion"]
    assert (partial.window, partial.n, partial.model_version, partial.decayed) == ("partial", 1, 2, False)
    assert set(asked) == {1}, "a partial window is never judged"


def test_a_version_without_a_band_is_reported_but_never_decays():
    tracker = PerformanceTracker(100, lambda version: None)
    for s, label in zip(*outcomes(100, seed=3, concept=True), strict=True):
        tracker.add("challenger", 7, s, label)
    window = tracker.windows()["challenger"]
    assert window.auc < 0.4 and window.band is None and not window.decayed


def test_decay_runs_count_the_consecutive_decayed_windows_up_to_now():
    tracker = PerformanceTracker(50, lambda version: BAND)
    for i, concept in enumerate([True, False, True, True, True]):
        for s, label in zip(*outcomes(50, seed=10 + i, concept=concept), strict=True):
            tracker.add("champion", 1, s, label, now=60.0 * i)
    assert decay_run(tracker.history, "champion") == (3, 120.0)
