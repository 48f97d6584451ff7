"""Bands learned from the reference period's chunks: the chunks, the spread, and when the fixed
threshold applies instead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.model.profile import reference_profile
from app.monitoring import bands
from app.monitoring.bands import FIXED, LEARNED, MAX_CHUNKS, MIN_CHUNKS


def test_chunks_are_whole_consecutive_and_spread_over_a_long_period():
    assert bands.chunk_bounds(1050, 500) == [(0, 500), (500, 1000)]  # the short tail is dropped
    assert bands.chunk_bounds(499, 500) == []
    many = bands.chunk_bounds(1000 * 500, 500)
    assert len(many) == MAX_CHUNKS and many[0] == (0, 500) and many[-1] == (999 * 500, 1000 * 500)
    assert all(b - a == 500 for a, b in many) and len(set(many)) == MAX_CHUNKS


def _reference(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=rows), "c": rng.choice(list("abcd"), rows)})


def test_drift_chunks_hold_each_features_psi_per_chunk_and_learn_a_band_per_feature():
    frame = _reference(20 * 200)
    profile = reference_profile(frame, ["x"], ["c"])
    chunks = bands.drift_chunks(frame, profile, 200)
    assert chunks["chunk_rows"] == 200 and {k: len(v) for k, v in chunks["psi"].items()} == {"x": 20, "c": 20}
    profile["bands"] = {"drift": chunks}
    thresholds, kind = bands.psi_thresholds(profile, window=200, fixed=0.2, mode=LEARNED)
    assert kind == LEARNED
    psi = np.asarray(chunks["psi"]["x"])
    assert thresholds["x"] == pytest.approx(psi.mean() + 3 * psi.std(ddof=1))
    assert 0 < thresholds["c"] < thresholds["x"]  # four categories: less sampling noise than ten bins
    # Another window size, fixed mode, or too few chunks: the fixed threshold for every feature.
    assert bands.psi_thresholds(profile, window=500, fixed=0.2, mode=LEARNED) == ({"x": 0.2, "c": 0.2}, FIXED)
    assert bands.psi_thresholds(profile, window=200, fixed=0.2, mode=FIXED)[1] == FIXED
    few = {
        **profile,
        "bands": {"drift": bands.drift_chunks(frame.head(200 * (MIN_CHUNKS - 1)), profile, 200)},
    }
    assert bands.psi_thresholds(few, window=200, fixed=0.2, mode=LEARNED)[1] == FIXED


def test_a_performance_band_is_learned_from_the_holdouts_chunks_or_is_the_auc_less_the_drop():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=5000)
    y = (rng.uniform(size=5000) < p).astype(int)  # calibrated scores
    profile = {"bands": {"performance": bands.performance_chunks(y, p, 500)}}
    learned = bands.performance_band(profile, 0.83, window=500, auc_drop=0.05, mode=LEARNED)
    aucs = np.asarray(profile["bands"]["performance"]["auc"])
    assert learned.kind == LEARNED and learned.auc_low == pytest.approx(aucs.mean() - 3 * aucs.std(ddof=1))
    assert learned.log_loss_high is not None and not learned.decayed(aucs.mean(), 0.5)
    assert learned.decayed(learned.auc_low - 0.01, 0.5) and learned.decayed(
        aucs.mean(), learned.log_loss_high + 0.01
    )
    fixed = bands.performance_band(profile, 0.83, window=250, auc_drop=0.05, mode=LEARNED)  # other size
    assert (fixed.kind, fixed.auc_low, fixed.log_loss_high) == (FIXED, pytest.approx(0.78), None)
    assert fixed.decayed(0.77, 9.0) and not fixed.decayed(0.79, 9.0)  # AUC alone
    unknown = bands.performance_band({}, None, window=500, auc_drop=0.05, mode=LEARNED)
    assert unknown.auc_low is None and not unknown.decayed(0.1, 9.0)
