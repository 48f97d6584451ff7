"""Drift math against straightforward recomputations from raw rows, and its edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from app.config import RetrainConfig
from app.data.synthetic import Defects, generate
from app.model.profile import categorical_profile, numeric_profile, reference_profile
from app.monitoring import retrain
from app.monitoring.drift import FLOOR, UNSEEN, DriftWindow, ks_p_value, psi, severity

CLEAN = Defects(0, 0, 0, 0, 0, 0)


def raw_psi(ref_values: np.ndarray, cur_values: np.ndarray) -> float:
    """The classic recipe from raw rows: deciles of the reference, floor 1e-4."""
    edges = np.unique(np.quantile(ref_values, np.linspace(0, 1, 11)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, ref_values, side="right"), minlength=len(edges) + 1) / len(
        ref_values
    )
    cur = np.bincount(np.searchsorted(edges, cur_values, side="right"), minlength=len(edges) + 1) / len(
        cur_values
    )
    ref, cur = np.maximum(ref, FLOOR), np.maximum(cur, FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@settings(max_examples=30, deadline=None)
@given(st.floats(-2, 2), st.floats(0.5, 2), st.integers(50, 3000))
def test_windowed_psi_equals_the_raw_recomputation(shift, scale, n):
    rng = np.random.default_rng(n)
    ref, cur = rng.normal(0, 1, 5000), rng.normal(shift, scale, n)
    window = DriftWindow({"numeric": {"x": numeric_profile(pd.Series(ref))}})
    for part in np.array_split(cur, 3):  # arriving in batches changes nothing
        window.add(pd.DataFrame({"x": part}))
    assert window.report(psi_alert=0.2)["features"]["x"]["psi"] == pytest.approx(raw_psi(ref, cur), abs=1e-9)


def test_ks_on_the_percentile_grid_is_close_to_scipys_exact_ks():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0.3, 1, 5_000)
    window = DriftWindow({"numeric": {"x": numeric_profile(pd.Series(ref))}})
    window.add(pd.DataFrame({"x": cur}))
    r = window.report(psi_alert=0.2)["features"]["x"]
    exact = stats.ks_2samp(ref, cur)
    assert r["statistic"] <= exact.statistic + 1e-12  # a grid can only miss the largest gap
    assert r["statistic"] == pytest.approx(exact.statistic, abs=0.01)
    assert r["p_value"] < 1e-6


def test_categorical_psi_puts_unseen_categories_in_their_own_bin_and_runs_chi2():
    ref = pd.Series(["US"] * 600 + ["DE"] * 400)
    window = DriftWindow({"categorical": {"country": categorical_profile(ref)}})
    window.add(pd.DataFrame({"country": ["US"] * 300 + ["DE"] * 200 + ["MX"] * 500}))
    r = window.report(psi_alert=0.2)["features"]["country"]
    ref_p = np.array([0.4, 0.6, FLOOR])  # DE, US, unseen
    cur_p = np.array([0.2, 0.3, 0.5])
    assert r["psi"] == pytest.approx(float(np.sum((cur_p - ref_p) * np.log(cur_p / ref_p))), abs=1e-9)
    assert r["unseen"] == 500 and r["test"] == "chi2" and r["p_value"] < 1e-9
    assert UNSEEN == "__unseen__"


def test_the_built_in_drift_is_caught_on_the_shifted_features_only():
    base = generate(20_000, seed=1, defects=CLEAN)
    drifted = generate(5_000, seed=2, drift=1.0, defects=CLEAN)
    same = generate(5_000, seed=3, defects=CLEAN)
    profile = reference_profile(base, ["age", "income", "score"], ["country", "gender"])
    reports = []
    for frame in (drifted, same):
        window = DriftWindow(profile)
        window.add(frame)
        reports.append(window.report(psi_alert=0.2))
    drift, calm = reports
    assert set(drift["drifted"]) == {"income", "country"} and drift["alert"]
    assert calm["drifted"] == [] and not calm["alert"]
    assert drift["features"]["income"]["p_adjusted"] < 0.01
    assert calm["max_psi"] < 0.1
    # (Tests on calm traffic can still reject here: a user's events repeat their features, so rows
    # are not independent; PSI, not the p-values, drives the alert.)


def test_bad_values_are_counted_and_never_give_nan():
    profile = reference_profile(
        pd.DataFrame({"const": [5.0] * 100, "x": np.arange(100.0), "c": ["a"] * 100}), ["const", "x"], ["c"]
    )
    window = DriftWindow(profile)
    empty = window.report(psi_alert=0.2)  # an empty window
    assert empty["features"]["x"]["psi"] is None and "no finite values" in empty["features"]["x"]["reason"]
    window.add(
        pd.DataFrame({"const": [5.0, 7.0, np.nan], "x": [np.inf, -np.inf, np.nan], "c": [None, "z", "a"]})
    )
    r = window.report(psi_alert=0.2)["features"]
    assert r["x"]["nonfinite"] == 2 and r["x"]["missing"] == 1 and r["x"]["psi"] is None
    assert r["const"]["psi"] is not None and np.isfinite(r["const"]["psi"])  # zero-variance reference
    assert r["c"]["missing"] == 1 and r["c"]["unseen"] == 1
    missing_column = DriftWindow(profile)
    missing_column.add(pd.DataFrame({"x": [1.0]}))  # records without a feature
    assert missing_column.report(psi_alert=0.2)["features"]["const"]["missing"] == 1


def test_psi_and_severity():
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    assert psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(
        2 * (1 - FLOOR) * np.log(1 / FLOOR)
    )
    assert [severity(x) for x in (0.05, 0.1, 0.19, 0.2, None)] == ["low", "medium", "medium", "high", None]


# ------------------------------------------------------------------ retrain decisions


def test_one_incident_triggers_one_retrain_and_cooldown_holds():
    # One alerting window is enough here (persistence: tests/unit/monitoring/test_retrain_trigger.py).
    cfg = RetrainConfig(
        schedule="none", cooldown_minutes=60, min_samples=1000, drift_windows=1, drift_minutes=0
    )
    state = retrain.ControllerState(started_at=0)
    triggers = []
    for minute, alert in enumerate([False, True, True, True, False, True, True]):
        trigger, reason = retrain.decide(
            state, cfg, now=minute * 60 * 20, drift_alert=alert, window_samples=5000
        )
        retrain.record(
            state, now=minute * 60 * 20, trigger=trigger, reason=reason, job_id="j" if trigger else None
        )
        triggers.append(trigger)
    # minute 20: incident 1 -> retrain; still high: nothing; clean at 80; high again at 100: cooldown
    # (100 - 20 < 60 min? no: 80 min later) -> second incident retrains.
    assert triggers == [None, "drift", None, None, None, "drift", None]
    assert len(state.submitted) == 2


def test_small_windows_do_not_trigger_and_schedules_do():
    cfg = RetrainConfig(schedule="every 6h", min_samples=1000, cooldown_minutes=0)
    state = retrain.ControllerState(started_at=0)
    assert retrain.decide(state, cfg, now=60, drift_alert=True, window_samples=10)[0] is None
    assert retrain.decide(state, cfg, now=3600, drift_alert=False, window_samples=0)[0] is None
    assert retrain.decide(state, cfg, now=6 * 3600, drift_alert=False, window_samples=0)[0] == "schedule"
    assert retrain.decide(state, cfg, now=6 * 3600 + 60, drift_alert=False, window_samples=0)[0] is None


@pytest.mark.parametrize(
    ("schedule", "period"),
    [
        ("daily", 86400),
        ("weekly", 7 * 86400),
        ("hourly", 3600),
        ("every 30m", 30 * 60),
        ("every 6h", 6 * 3600),
        ("every 2d", 2 * 86400),
        ("Every 45M", 45 * 60),
        ("none", None),
        ("off", None),
    ],
)
def test_schedules_parse_to_their_period(schedule, period):
    cfg = RetrainConfig(schedule=schedule, cooldown_minutes=0)
    assert cfg.period_seconds == period
    # The controller runs on that period: nothing just before it, a scheduled run at it, and
    # never a scheduled run without a schedule.
    state = retrain.ControllerState(started_at=0)
    if period is None:
        assert retrain.decide(state, cfg, now=365 * 86400, drift_alert=False, window_samples=0)[0] is None
        return
    assert retrain.decide(state, cfg, now=period - 1, drift_alert=False, window_samples=0)[0] is None
    trigger, reason = retrain.decide(state, cfg, now=period, drift_alert=False, window_samples=0)
    assert trigger == "schedule" and repr(schedule) in reason
    assert state.last_scheduled_at == period  # the next period counts from this run


@pytest.mark.parametrize("schedule", ["sometimes", "every 0h", "every h", "0 3 * * *"])
def test_bad_schedules_are_refused_at_load(schedule):
    with pytest.raises(ValueError, match="retrain.schedule"):
        RetrainConfig(schedule=schedule)


def test_stationary_traffic_in_one_hour_raises_no_alert_and_a_shift_does(cfg):
    """Calendar features are watched, not alerting: a window of minutes holds one hour of one
    day, which is when the traffic came, not a change in what it is."""
    from datetime import datetime, timezone

    from app.data.synthetic import Defects, generate
    from app.features.transforms import add_features, feature_spec
    from app.model.profile import reference_profile
    from app.serving.scoring import raw_rows_to_frame

    clean = Defects(0, 0, 0, 0, 0, 0)
    spec = feature_spec(cfg)
    train = add_features(generate(20_000, seed=1, defects=clean), cfg)
    profile = reference_profile(train, list(spec.numeric), [*spec.time, *spec.categorical])
    calendar = frozenset(cfg.features.time)
    now = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)

    def window(drift: float) -> DriftWindow:
        raw = generate(5000, seed=7, defects=clean, drift=drift)
        w = DriftWindow(profile)
        w.add(raw_rows_to_frame(raw[cfg.dataset.features].to_dict("records"), cfg, now=now))
        return w

    stationary = window(0.0)
    assert not stationary.report(psi_alert=0.2, watch_only=calendar)["alert"]
    assert stationary.report(psi_alert=0.2)["alert"]  # what alerting on calendar features did
    reported = stationary.report(psi_alert=0.2, watch_only=calendar)["features"]
    assert reported["hour"]["alerting"] is False and reported["hour"]["psi"] > 0.2  # still shown
    drifted = window(1.0).report(psi_alert=0.2, watch_only=calendar)
    assert drifted["alert"] and "income" in drifted["drifted"]


def test_ks_p_values_are_scipys_up_to_10k_and_within_1_percent_of_them_from_170k():
    for n in (50, 2_000, 10_000):
        for d in (0.001, 0.02, 0.1):
            assert ks_p_value(d, n) == stats.kstwo.sf(d, n)
    for n in (170_000, 400_000):
        for nd2 in (0.1, 1.0, 3.0, 10.0):  # p from about 1 down to 1e-8
            d = np.sqrt(nd2 / n)
            assert ks_p_value(d, n) == pytest.approx(stats.kstwo.sf(d, n), rel=0.01)
