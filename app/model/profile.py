"""The reference drift profile of a training set: per-feature bins and category frequencies.

Stored in the model bundle so the drift monitor compares live traffic with exactly the data
the serving model learned from: deciles of each numeric feature (PSI's bins) with the share
of rows in each, a percentile grid with the CDF at each point (for the KS test on binned
live data), and the frequency of each category.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_BINS = 10
N_GRID = 100  # percentile grid for KS


def numeric_profile(values: pd.Series) -> dict:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return {"edges": [], "proportions": [], "missing": 1.0, "count": int(x.size)}
    # Inner decile edges; duplicates collapse (a constant feature has one bin).
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    grid = np.unique(np.quantile(finite, np.linspace(0, 1, N_GRID + 1)[1:-1]))
    sorted_values = np.sort(finite)
    return {
        "cdf_edges": grid.tolist(),
        "cdf": (np.searchsorted(sorted_values, grid, side="right") / finite.size).tolist(),
        "edges": edges.tolist(),
        "proportions": (counts / finite.size).tolist(),
        "missing": float(1 - finite.size / x.size),
        "count": int(x.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
    }


def categorical_profile(values: pd.Series) -> dict:
    present = values.dropna().astype(str)
    freqs = present.value_counts(normalize=True).sort_index()
    return {
        "frequencies": {str(k): float(v) for k, v in freqs.items()},
        "missing": float(1 - len(present) / max(len(values), 1)),
        "count": len(values),
    }


def reference_profile(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict:
    return {
        "numeric": {c: numeric_profile(df[c]) for c in numeric},
        "categorical": {c: categorical_profile(df[c]) for c in categorical},
    }
