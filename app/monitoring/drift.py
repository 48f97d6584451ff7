"""Drift math, pure: a bounded window of live traffic summarised on the reference's bins, and
PSI / KS / chi-square per feature against the model's reference profile.

- PSI is the classic recipe: 10 bins at the reference's deciles, empty-bin proportions floored
  at 0.0001, `sum((cur - ref) * ln(cur / ref))`; severity low < 0.1 <= medium < 0.2 <= high.
  Categoricals are binned by category, with every unseen category in one bin of its own.
- KS for numerics is evaluated on the reference's percentile grid (99 points): the window keeps
  counts, not rows, so the statistic is the largest CDF gap at those points (a lower bound of
  the exact one; see benchmarks/drift.py), with an asymptotic two-sample p-value
  (`ks_p_value`).
- chi-square for categoricals compares the window's category counts with the reference's
  frequencies (scipy). p-values are corrected for testing many features at once
  (Benjamini-Hochberg).
Missing and non-finite values are counted and reported, never binned into the PSI; an empty
window or a feature with no usable value gives `None` with a reason, never NaN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from app.monitoring.binning import BinCounter

FLOOR = 1e-4
UNSEEN = "__unseen__"
MAX_CATEGORIES = 1_000  # distinct live categories tracked per feature; beyond that, "unseen"
EXACT_KS_MAX_N = 10_000  # effective sample size up to which KS p-values use the exact-n distribution


def severity(psi: float | None) -> str | None:
    if psi is None:
        return None
    return "low" if psi < 0.1 else "medium" if psi < 0.2 else "high"


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of two proportion vectors over the same bins (floored, so never infinite)."""
    ref = np.maximum(np.asarray(reference, dtype=float), FLOOR)
    cur = np.maximum(np.asarray(current, dtype=float), FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_from_cdf(ref_cdf: np.ndarray, ref_n: int, cur_cdf: np.ndarray, cur_n: int) -> tuple[float, float]:
    """Two-sample KS statistic (largest CDF gap on the grid) and its asymptotic p-value."""
    d = float(np.max(np.abs(np.asarray(ref_cdf) - np.asarray(cur_cdf)))) if len(ref_cdf) else 0.0
    return d, ks_p_value(d, ref_n * cur_n / (ref_n + cur_n))


def ks_p_value(d: float, effective_n: float) -> float:
    """P-value of a two-sample KS statistic at the effective sample size n*m/(n+m).

    Up to 10,000 it is scipy's distribution of the statistic at that size (what `ks_2samp`'s
    asymptotic method uses). Beyond, scipy sums a series as long as the sample, which was half
    of the monitor's time on large windows, so the limiting Kolmogorov distribution with
    Stephens' small-sample correction takes over: within 1 % of scipy's value from 170k (the
    test checks it), far inside what evaluating the statistic on a 99-point grid moves it.
    """
    if effective_n <= EXACT_KS_MAX_N:
        return float(stats.kstwo.sf(d, max(round(effective_n), 1)))
    root = np.sqrt(effective_n)
    return float(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * d))


class NumericWindow:
    """Counts of one numeric feature on the reference's decile bins and percentile grid.

    Both sets of edges are counted in one pass over their union: each bin of the union lies
    inside one decile bin and one grid bin, so the two sets of counts are sums of its counts.
    """

    def __init__(self, profile: dict):
        self.profile = profile
        self.edges = np.asarray(profile.get("edges", []), dtype=float)
        self.grid = np.asarray(profile.get("cdf_edges", []), dtype=float)
        union = np.union1d(self.edges, self.grid)
        self.counter = BinCounter(union)
        self.union_counts = np.zeros(len(union) + 1, dtype=np.int64)
        lower = np.concatenate([[-np.inf], union])  # the lowest value of each union bin
        self.to_bin = np.searchsorted(self.edges, lower, side="right")
        self.to_grid = np.searchsorted(self.grid, lower, side="right")
        self.n = self.missing = self.nonfinite = 0

    def add(self, values: pd.Series) -> None:
        if values.dtype == np.float64:
            x = values.to_numpy()
        else:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(x)
        self.n += len(x)
        if not finite.all():
            nan = np.isnan(x)
            self.missing += int(nan.sum())
            self.nonfinite += int((~finite & ~nan).sum())
            x = x[finite]
        self.union_counts += self.counter.counts(x)

    @property
    def bins(self) -> np.ndarray:
        return self._regroup(self.to_bin, len(self.edges) + 1)

    @property
    def grid_bins(self) -> np.ndarray:
        return self._regroup(self.to_grid, len(self.grid) + 1)

    def _regroup(self, mapping: np.ndarray, size: int) -> np.ndarray:
        return np.bincount(mapping, weights=self.union_counts, minlength=size).astype(np.int64)

    def report(self) -> dict:
        bins = self.bins
        used = int(bins.sum())
        out = {"kind": "numeric", "n": self.n, "missing": self.missing, "nonfinite": self.nonfinite}
        if not self.profile.get("proportions"):
            return {**out, "psi": None, "reason": "the reference has no finite values"}
        if used == 0:
            return {**out, "psi": None, "reason": "no finite values in the window"}
        value = psi(np.asarray(self.profile["proportions"]), bins / used)
        out.update(psi=value, severity=severity(value), reason=None)
        out["bins"] = {
            "edges": self.edges.tolist(),
            "reference": list(self.profile["proportions"]),
            "current": (bins / used).tolist(),
        }
        if len(self.grid):
            cur_cdf = np.cumsum(self.grid_bins[:-1]) / used
            d, p = ks_from_cdf(np.asarray(self.profile["cdf"]), int(self.profile["count"]), cur_cdf, used)
            out.update(test="ks", statistic=d, p_value=p)
        return out


class CategoricalWindow:
    """Category counts of one categorical feature (bounded; overflow counts as unseen)."""

    def __init__(self, profile: dict):
        self.profile = profile
        self.reference = profile.get("frequencies", {})
        self.counts: Counter[str] = Counter()
        self.n = self.missing = 0

    def add(self, values: pd.Series) -> None:
        self.n += len(values)
        present = values.dropna()
        self.missing += len(values) - len(present)
        for cat, k in present.astype(str).value_counts().items():
            if cat in self.counts or cat in self.reference or len(self.counts) < MAX_CATEGORIES:
                self.counts[cat] += int(k)
            else:
                self.counts[UNSEEN] += int(k)

    def report(self) -> dict:
        used = sum(self.counts.values())
        out = {"kind": "categorical", "n": self.n, "missing": self.missing}
        if not self.reference:
            return {**out, "psi": None, "reason": "the reference has no values"}
        if used == 0:
            return {**out, "psi": None, "reason": "no values in the window"}
        cats = sorted(self.reference)
        unseen = sum(k for c, k in self.counts.items() if c not in self.reference)
        ref = np.array([self.reference[c] for c in cats] + [0.0])
        cur = np.array([self.counts.get(c, 0) for c in cats] + [unseen], dtype=float)
        value = psi(ref, cur / used)
        expected = np.maximum(ref, FLOOR)
        expected = expected / expected.sum() * used
        chi = stats.chisquare(cur, expected)
        out.update(
            psi=value,
            severity=severity(value),
            reason=None,
            unseen=int(unseen),
            test="chi2",
            statistic=float(chi.statistic),
            p_value=float(chi.pvalue),
        )
        out["bins"] = {
            "categories": [*cats, UNSEEN],
            "reference": ref.tolist(),
            "current": (cur / used).tolist(),
        }
        return out


class DriftWindow:
    """One window of traffic for every profiled feature (and the score, when profiled)."""

    def __init__(self, profile: dict):
        self.features: dict[str, NumericWindow | CategoricalWindow] = {}
        for name, p in profile.get("numeric", {}).items():
            self.features[name] = NumericWindow(p)
        for name, p in profile.get("categorical", {}).items():
            self.features[name] = CategoricalWindow(p)
        self.score = NumericWindow(profile["score"]) if profile.get("score") else None
        self.n = 0

    def add(self, frame: pd.DataFrame, score_column: str = "pred_score") -> None:
        self.n += len(frame)
        for name, window in self.features.items():
            window.add(frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object))
        if self.score is not None and score_column in frame:
            self.score.add(frame[score_column])

    def report(
        self,
        *,
        psi_alert: float,
        watch_only: frozenset[str] = frozenset(),
        thresholds: Mapping[str, float] | None = None,
    ) -> dict:
        """Per-feature statistics; features in `watch_only` are reported but raise no alert. A
        feature drifts over its own threshold in `thresholds` (learned bands), else `psi_alert`."""
        thresholds = thresholds or {}
        features = {name: w.report() for name, w in self.features.items()}
        for name in watch_only & features.keys():
            features[name]["alerting"] = False
        tested = [(n, r["p_value"]) for n, r in features.items() if r.get("p_value") is not None]
        if tested:
            adjusted = stats.false_discovery_control([p for _, p in tested])
            for (name, _), q in zip(tested, adjusted, strict=True):
                features[name]["p_adjusted"] = float(q)
        drifted = sorted(
            n
            for n, r in features.items()
            if r["psi"] is not None and r["psi"] > thresholds.get(n, psi_alert) and n not in watch_only
        )
        psis = [r["psi"] for r in features.values() if r["psi"] is not None]
        return {
            "n": self.n,
            "features": features,
            "score": self.score.report() if self.score is not None else None,
            "max_psi": max(psis) if psis else None,
            "drifted": drifted,
            "alert": bool(drifted),
        }
