"""The lookup-table bin counter against numpy's binary search, value for value."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.monitoring.binning import MAX_EDGES_PER_CELL, BinCounter


def searchsorted_counts(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)


def with_boundaries(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values exactly on, just below and just above every edge, beyond both ends, and `x`."""
    near = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    far = np.array([-1e300, 1e300, edges.min() - 1.0, edges.max() + 1.0]) if len(edges) else np.array([0.0])
    return np.concatenate([x, near, far])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["normal", "lognormal", "integers", "pareto"]),
    st.integers(1, 120),
    st.integers(0, 2**32 - 1),
)
def test_counts_equal_the_binary_search_on_any_reference(shape, n_edges, seed):
    rng = np.random.default_rng(seed)
    reference = {
        "normal": lambda n: rng.normal(0, 1, n),
        "lognormal": lambda n: rng.lognormal(10, 2, n),
        "integers": lambda n: rng.integers(0, 7, n).astype(float),  # few distinct values
        "pareto": lambda n: rng.pareto(0.5, n),  # extreme tail: crowded cells
    }[shape](5_000)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, n_edges + 2)[1:-1]))
    x = with_boundaries(edges, reference[::-1] * rng.uniform(0.5, 1.5))
    assert np.array_equal(BinCounter(edges).counts(x), searchsorted_counts(edges, x))


def test_the_table_is_used_on_ordinary_edges_and_crowded_ones_fall_back():
    deciles = np.quantile(np.random.default_rng(0).normal(0, 1, 10_000), np.linspace(0.01, 0.99, 99))
    assert BinCounter(deciles).passes >= 1  # the fast path is the one the tests above check
    crowded = np.concatenate([np.linspace(0, 1e-9, MAX_EDGES_PER_CELL + 1), [1.0]])
    counter = BinCounter(crowded)
    assert counter.passes == 0
    x = with_boundaries(crowded, np.linspace(-1, 2, 1_000))
    assert np.array_equal(counter.counts(x), searchsorted_counts(crowded, x))


def test_degenerate_edges_count_like_the_binary_search():
    for edges in (np.array([]), np.array([3.0]), np.array([2.0, 2.0])):
        x = np.array([-1.0, 2.0, 3.0, 5.0])
        assert np.array_equal(BinCounter(edges).counts(x), searchsorted_counts(edges, x))
    assert np.array_equal(BinCounter(np.array([0.0, 1.0])).counts(np.array([])), [0, 0, 0])
