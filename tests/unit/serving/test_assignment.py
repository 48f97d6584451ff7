"""A/B assignment without Ray: sticky, accurate, independent per experiment."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.serving.assignment import choose_variant, effective_split, in_shadow_sample

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
        "from app.serving.assignment import choose_variant;"
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
    everything_on_a_gone_challenger = {"champion": 0.0, "challenger": 1.0}
    assert effective_split(everything_on_a_gone_challenger, {"champion"}, "champion") == {"champion": 1.0}
    assert effective_split(everything_on_a_gone_challenger, {"champion"}) == {}
    assert effective_split({"a": 0.5, "b": 0.25, "c": 0.25}, {"a", "b"}) == pytest.approx(
        {"a": 2 / 3, "b": 1 / 3}
    )


def test_shadow_sample_fraction():
    sampled = sum(in_shadow_sample("exp", f"r{i}", 0.25) for i in range(10_000))
    assert abs(sampled / 10_000 - 0.25) < 0.02
    assert not any(in_shadow_sample("exp", f"r{i}", 0.0) for i in range(100))
