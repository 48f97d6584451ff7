"""A/B assignment and the experiment statistics, without Ray."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.serving.experiment import (
    KEEP_RUNNING,
    PROMOTE,
    STOP,
    VariantStats,
    choose_variant,
    compare,
    effective_split,
    experiment_report,
    in_shadow_sample,
    min_sample_size,
    msprt_p_value,
    relative_lift,
    two_proportion_test,
)

SPLIT = {"champion": 0.9, "challenger": 0.1}


def test_split_is_accurate_to_two_points_over_10000_ids():
    counts = Counter(choose_variant("exp-1", i, SPLIT) for i in range(10_000))
    assert abs(counts["challenger"] / 10_000 - 0.1) < 0.02
    three = {"a": 0.5, "b": 0.3, "c": 0.2}
    counts = Counter(choose_variant("exp-2", f"user-{i}", three) for i in range(10_000))
    for name, share in three.items():
        assert abs(counts[name] / 10_000 - share) < 0.02


def test_assignment_is_the_same_in_another_process():
    """Python's hash() is salted per process; the assignment must not be."""
    here = [choose_variant("exp-1", i, SPLIT) for i in range(200)]
    code = (
        "from app.serving.experiment import choose_variant;"
        "print(','.join(choose_variant('exp-1', i, {'champion': 0.9, 'challenger': 0.1}) for i in range(200)))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip().split(",") == here


@given(st.integers(min_value=0, max_value=10**12), st.floats(min_value=0.0, max_value=0.9))
def test_growing_the_challenger_share_never_moves_a_challenger_user_away(key, share):
    small = {"champion": 1 - share, "challenger": share}
    large = {"champion": 1 - share - 0.1, "challenger": share + 0.1}
    if choose_variant("exp", key, small) == "challenger":
        assert choose_variant("exp", key, large) == "challenger"


def test_experiments_assign_independently():
    a = [choose_variant("exp-a", i, {"x": 0.5, "y": 0.5}) for i in range(2000)]
    b = [choose_variant("exp-b", i, {"x": 0.5, "y": 0.5}) for i in range(2000)]
    agreement = np.mean([x == y for x, y in zip(a, b, strict=True)])
    assert 0.45 < agreement < 0.55


def test_effective_split_gives_a_missing_variants_share_to_the_rest():
    assert effective_split(SPLIT, {"champion"}) == {"champion": 1.0}
    assert effective_split(SPLIT, set()) == {}
    assert effective_split({"a": 0.5, "b": 0.25, "c": 0.25}, {"a", "b"}) == pytest.approx(
        {"a": 2 / 3, "b": 1 / 3}
    )


def test_shadow_sample_fraction():
    sampled = sum(in_shadow_sample("exp", f"r{i}", 0.25) for i in range(10_000))
    assert abs(sampled / 10_000 - 0.25) < 0.02
    assert not any(in_shadow_sample("exp", f"r{i}", 0.0) for i in range(100))


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
