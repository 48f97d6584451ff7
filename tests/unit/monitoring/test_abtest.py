"""The A/B experiment statistics, without Ray."""

from __future__ import annotations

import numpy as np
import pytest

from app.monitoring.abtest import (
    KEEP_RUNNING,
    PROMOTE,
    STOP,
    VariantStats,
    compare,
    experiment_report,
    min_sample_size,
    msprt_p_value,
    relative_lift,
    two_proportion_test,
)


def test_two_proportion_test_matches_a_textbook_value():
    # 200/1000 vs 250/1000: pooled p=0.225, z = 0.05 / sqrt(0.225*0.775*0.002) = 2.677
    assert two_proportion_test(200, 1000, 250, 1000) == pytest.approx(0.00742, abs=1e-4)
    assert two_proportion_test(0, 0, 1, 10) is None


def test_min_sample_size_matches_the_standard_formula():
    # 10 % baseline, +20 % relative (to 12 %), alpha 0.05, power 0.8: about 3,841 per arm.
    assert min_sample_size(0.10, 0.20, alpha=0.05, power=0.8) == pytest.approx(3841, abs=5)


def test_relative_lift_interval_covers_the_truth():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(300):
        a, b = rng.binomial(2000, 0.2), rng.binomial(2000, 0.24)
        ci = relative_lift(a, 2000, b, 2000, alpha=0.05)["ci"]
        covered += ci[0] <= 0.2 <= ci[1]
    assert 0.92 <= covered / 300 <= 0.98


def test_sequential_p_value_stays_valid_under_repeated_looks():
    """Under no difference, peeking after every 100 outcomes rarely rejects (unlike a z-test)."""
    rng = np.random.default_rng(1)
    seq_rejects = naive_rejects = 0
    for _ in range(200):
        a, b = rng.binomial(1, 0.3, 3000), rng.binomial(1, 0.3, 3000)
        looks = range(100, 3001, 100)
        seq_rejects += any(
            (msprt_p_value(a[:n].sum(), n, b[:n].sum(), n, tau=0.03) or 1) < 0.05 for n in looks
        )
        naive_rejects += any((two_proportion_test(a[:n].sum(), n, b[:n].sum(), n) or 1) < 0.05 for n in looks)
    assert seq_rejects / 200 <= 0.05
    assert naive_rejects > seq_rejects  # peeking inflates the fixed-sample test's errors


def _stats(n, correct):
    return VariantStats(requests=n, outcomes=n, correct=correct, positives=correct)


def test_decisions():
    assert (
        compare(_stats(100, 50), _stats(100, 52), metric="accuracy", alpha=0.05, mde=0.05, power=0.8)[
            "decision"
        ]
        == KEEP_RUNNING
    )
    better = compare(
        _stats(5000, 2500), _stats(5000, 2900), metric="accuracy", alpha=0.05, mde=0.05, power=0.8
    )
    assert better["decision"] == PROMOTE and better["relative_improvement"] == pytest.approx(0.16)
    worse = compare(
        _stats(5000, 2900), _stats(5000, 2500), metric="accuracy", alpha=0.05, mde=0.05, power=0.8
    )
    assert worse["decision"] == STOP


def test_report_has_every_variant_and_survives_empty_ones():
    report = experiment_report(
        {"champion": _stats(10, 5), "challenger": VariantStats()},
        control="champion",
        metric="conversion",
        alpha=0.05,
        mde=0.05,
        power=0.8,
    )
    assert set(report["variants"]) == {"champion", "challenger"}
    assert report["variants"]["challenger"]["conversion"] is None
    assert report["comparisons"]["challenger"]["decision"] == KEEP_RUNNING


def test_always_valid_interval_covers_the_truth_at_every_look():
    from app.monitoring.abtest import always_valid_interval

    rng = np.random.default_rng(3)
    runs, misses = 300, 0
    for _ in range(runs):
        a = rng.random(4000) < 0.60
        b = rng.random(4000) < 0.63  # true difference 0.03
        for n in range(200, 4001, 200):  # 20 looks at the same data as it grows
            low, high = always_valid_interval(a[:n].sum(), n, b[:n].sum(), n, tau=0.03, alpha=0.05)
            if not low <= 0.03 <= high:
                misses += 1
                break
    assert misses / runs <= 0.05
    assert always_valid_interval(0, 1, 1, 1, tau=0.03, alpha=0.05) == (None, None)
