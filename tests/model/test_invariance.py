"""Invariance: changing what the label does not depend on leaves the score (nearly) unchanged.

The generator's label ignores the month and, outside the two crossed age windows (women 25-34,
men 50-64), the gender. The model still reads both (month is a time feature, gender a
categorical and part of the age_bucket x gender cross), so it could learn noise from them;
these tests bound how much. The tolerances sit well below the effects the model does learn:
flipping gender at age 30 (a +1.0 logit effect in the generator) moves the score by about
0.2 on average, four times `MEAN_ABS`, and the control test below keeps that true.
"""

from __future__ import annotations

import numpy as np

from tests.model.probes import FEBRUARY_WEEK, JANUARY_WEEK, in_week

# Observed on the trained model (several seeds): mean |change| 0.01-0.03, |mean change| under
# 0.015, 95th percentile |change| under 0.085.
MEAN_ABS, MEAN_SHIFT, P95_ABS = 0.05, 0.03, 0.12


def change(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    d = after - before
    return {
        "mean_abs": float(np.abs(d).mean()),
        "mean_shift": float(abs(d.mean())),
        "p95_abs": float(np.quantile(np.abs(d), 0.95)),
    }


def assert_invariant(before: np.ndarray, after: np.ndarray) -> None:
    c = change(before, after)
    assert c["mean_abs"] <= MEAN_ABS and c["mean_shift"] <= MEAN_SHIFT and c["p95_abs"] <= P95_ABS, c


def outside_crossed_windows(rows):
    age = rows["age"].astype(float)
    return rows[(age < 25) | ((age >= 35) & (age < 50)) | (age >= 65)]


def test_month_does_not_move_the_score(score, probe):
    # Same weekday and time of day, one week in January, one in February (both seen in training).
    assert_invariant(score(in_week(probe, JANUARY_WEEK)), score(in_week(probe, FEBRUARY_WEEK)))


def test_gender_outside_the_crossed_age_windows_does_not_move_the_score(score, probe):
    rows = outside_crossed_windows(probe)
    assert len(rows) > 1000
    assert_invariant(score(rows.assign(gender="M")), score(rows.assign(gender="F")))


def test_the_tolerance_would_catch_an_effect_the_generator_has(score, probe):
    """Control: the same check fails for a change that matters (gender inside a crossed window),
    so the invariance tests above are not passing because the bounds are loose."""
    rows = probe.assign(age=30)
    c = change(score(rows.assign(gender="M")), score(rows.assign(gender="F")))
    assert c["mean_abs"] > 2 * MEAN_ABS and c["mean_shift"] > 2 * MEAN_SHIFT, c


def test_identity_and_time_below_the_hour_are_ignored_exactly(score):
    """The entity id, the minute and the time-zone spelling of the same instant are not model
    inputs: a leak of any of them (an id or sub-hour feature, local-time calendar features)
    would change these scores."""
    row = {"age": 41, "income": 52_000.0, "score": 0.63, "country": "FR", "gender": "M"}
    rows = [
        {**row, "user_id": 1, "event_timestamp": "2024-01-20T19:00:00Z"},
        {**row, "user_id": 987_654, "event_timestamp": "2024-01-20T19:59:59Z"},
        {**row, "user_id": 1, "event_timestamp": "2024-01-20T21:30:00+02:00"},
        {**row, "user_id": 1, "event_timestamp": "2024-01-20T14:05:00-05:00"},
    ]
    scores = score(rows)
    np.testing.assert_array_equal(scores, np.full(len(rows), scores[0]))
    # The hour itself is read (an evening vs a morning), so the equality above is not vacuous.
    assert score([{**row, "event_timestamp": "2024-01-20T10:00:00Z"}])[0] != scores[0]
