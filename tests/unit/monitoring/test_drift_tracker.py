"""The drift tracker without Ray: tumbling windows per variant on the reference's bins, the
history of completed windows, a new reference, calendar and ignored features, and the typed
window report keeping the JSON shape of drift.py's statistics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app.model.profile import reference_profile
from app.monitoring.drift import DriftWindow
from app.monitoring.drift_tracker import DriftTracker, alerting
from app.monitoring.messages import WindowReport

WINDOW = 500


@pytest.fixture(scope="module")
def profile() -> dict:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, 5000),
            "hour": rng.integers(0, 24, 5000).astype(float),
            "country": rng.choice(["US", "DE"], 5000),
        }
    )
    return {
        **reference_profile(ref, ["income", "hour"], ["country"]),
        "score": reference_profile(pd.DataFrame({"s": rng.random(5000)}), ["s"], [])["numeric"]["s"],
    }


def rows(n: int, *, variant: str = "champion", shift: float = 0.0, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "variant": variant,
            "income": rng.lognormal(10 + shift, 0.5, n),
            "hour": rng.integers(0, 24, n).astype(float) if shift == 0 else np.full(n, 3.0),
            "country": rng.choice(["US", "DE"] if shift == 0 else ["US", "MX"], n),
            "pred_score": rng.random(n),
        }
    ).to_dict("records")


def tracker(profile, **settings) -> DriftTracker:
    t = DriftTracker(**{"window": WINDOW, "psi_alert": 0.2, **settings})
    t.follow(7, profile)
    return t


def test_without_a_reference_nothing_is_windowed():
    t = DriftTracker(window=WINDOW, psi_alert=0.2)
    t.add(rows(600))
    assert t.windows() == {} and not t.history and t.reference_version is None


def test_a_partial_window_is_reported_until_one_completes_and_never_alerts(profile):
    t = tracker(profile)
    t.add(rows(300, shift=1.0))
    partial = t.windows()["champion"]
    assert (partial.window, partial.n) == ("partial", 300) and partial.alert
    assert not alerting(t.windows()) and not t.history  # a partial window raises no alert
    t.add(rows(300, shift=1.0, seed=2), now=100.0)
    complete = t.windows()["champion"]
    assert (complete.window, complete.n) == ("complete", WINDOW) and alerting(t.windows())
    assert {"income", "country"} <= set(complete.drifted)
    (point,) = t.history
    assert (point.at, point.variant, point.n, point.drifted) == (100.0, "champion", WINDOW, complete.drifted)
    assert point.max_psi == complete.max_psi and point.score_psi == complete.score.psi


def test_windows_tumble_per_variant(profile):
    t = tracker(profile)
    t.add(rows(1200) + rows(200, variant="challenger"))
    windows = t.windows()
    assert list(windows) == ["challenger", "champion"]
    assert windows["champion"].window == "complete" and windows["challenger"].window == "partial"
    assert [p.variant for p in t.history] == ["champion", "champion"]  # 1200 records: two full windows
    assert t.current["champion"].n == 200  # the third is being filled


def test_a_calm_window_does_not_alert(profile):
    t = tracker(profile)
    t.add(rows(WINDOW))
    assert not alerting(t.windows()) and t.windows()["champion"].drifted == ()


def test_calendar_features_are_shown_but_never_alert_and_ignored_ones_are_not_tracked(profile):
    t = tracker(profile, watch_only=frozenset({"hour"}), ignore=frozenset({"income"}))
    t.add([{**r, "hour": 3.0} for r in rows(WINDOW)])  # calm traffic, all in one hour of the day
    report = t.windows()["champion"]
    assert "income" not in report.features
    assert report.features["hour"].alerting is False and report.features["hour"].psi > 0.2
    assert "hour" not in report.drifted and not report.alert


def test_a_new_reference_restarts_the_windows_on_its_bins(profile):
    t = tracker(profile)
    t.add(rows(WINDOW + 100))
    t.follow(8, profile)
    assert t.reference_version == 8 and t.windows() == {}
    assert len(t.history) == 1  # drift over time is kept across references


def test_a_replay_does_not_add_to_the_history_and_the_history_round_trips(profile):
    t = tracker(profile)
    t.add(rows(WINDOW), remember=False)  # a restart replaying records already in the history
    assert t.windows()["champion"].window == "complete" and not t.history
    t.add(rows(WINDOW, seed=5), now=50.0)
    saved = json.loads(json.dumps(t.history_rows()))  # as the snapshot keeps it
    restarted = tracker(profile)
    restarted.restore_history(saved)
    assert list(restarted.history) == list(t.history)


def test_a_new_window_size_applies_from_the_next_window(profile):
    t = tracker(profile)
    t.add(rows(100))
    t.configure(window=200, psi_alert=0.5, watch_only=frozenset(), ignore=frozenset())
    t.add(rows(150, seed=2))
    assert t.windows()["champion"].n == 200 and t.windows()["champion"].window == "complete"


def test_the_typed_report_keeps_the_statistics_json_shape(profile):
    t = tracker(profile)
    records = rows(WINDOW, shift=1.0)
    t.add(records)
    window = DriftWindow(t.profile)
    window.add(pd.DataFrame.from_records(records))
    expected = {**window.report(psi_alert=0.2), "window": "complete"}
    typed = t.windows()["champion"]
    assert isinstance(typed, WindowReport)
    assert json.loads(typed.model_dump_json()) == json.loads(json.dumps(expected))
    assert "nonfinite" not in typed.model_dump()["features"]["country"]  # absent keys stay absent


def test_learned_psi_bands_judge_each_feature_by_its_own_threshold(profile):
    """A reference whose chunks barely moved learns tight bands: the same stationary window that
    the fixed 0.2 lets through drifts under them; with chunks of another size the fixed applies."""
    tight = {"chunk_rows": WINDOW, "psi": {f: [0.0001] * 5 + [0.0002] for f in ("income", "hour", "country")}}
    learned = {**profile, "bands": {"drift": tight}}
    settings = {"window": WINDOW, "psi_alert": 0.2}
    tracker = DriftTracker(**settings, psi_band="learned")
    tracker.follow(1, learned)
    tracker.add(rows(WINDOW, seed=5))
    window = tracker.windows()["champion"]
    assert tracker.band == "learned" and window.alert and "income" in window.drifted
    fixed = DriftTracker(**settings, psi_band="fixed")
    fixed.follow(1, learned)
    fixed.add(rows(WINDOW, seed=5))
    assert fixed.band == "fixed" and not fixed.windows()["champion"].alert
    other_size = DriftTracker(window=2 * WINDOW, psi_alert=0.2, psi_band="learned")
    other_size.follow(1, learned)
    assert other_size.band == "fixed"
