"""Alert bands learned from the reference period's own chunk-to-chunk variation.

A fixed threshold (PSI 0.2, an AUC drop of 0.05) ignores how much a metric moves between
windows of the same stationary data: in small windows PSI's sampling noise alone crosses 0.2,
in large ones a real shift stays under it. As NannyML derives its thresholds, the training run
cuts the reference period into chunks of the monitor's window size and computes each chunk's
metric: PSI per feature on the validation and holdout rows against the profile made from the
training rows, AUC and log loss on the holdout's scores. Where users return (the built-in data:
each user's events span the eight weeks), the later rows share their users with the profile and
vary less than windows of other users do: learned PSI bands are then too tight, which is why
`monitor.psi_band` defaults to fixed (benchmarks/bands.py measures both). The band is the
chunks' mean plus or minus `SIGMAS` standard deviations. The chunk values are saved in the
model's profile (`profile["bands"]`), so the monitor learns its bands from the version it
judges.

A band is learned only from `MIN_CHUNKS` chunks of the monitor's current window size; with
fewer, or after the window was resized, the fixed threshold applies and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from app.monitoring.drift import DriftWindow

SIGMAS = 3.0
MIN_CHUNKS = 6
MAX_CHUNKS = 100  # spread over the reference period when it holds more
LEARNED, FIXED = "learned", "fixed"
BandKind = Literal["learned", "fixed"]


def chunk_bounds(rows: int, size: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) chunks of `size` rows (a short tail is dropped), at most
    MAX_CHUNKS of them, spread evenly over the rows."""
    starts = list(range(0, rows - size + 1, size)) if size > 0 else []
    if len(starts) > MAX_CHUNKS:
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, MAX_CHUNKS).round().astype(int)]
    return [(s, s + size) for s in starts]


def drift_chunks(frame: pd.DataFrame, profile: Mapping, size: int) -> dict:
    """Each feature's PSI in each `size`-row chunk of the reference rows, against `profile`."""
    psi: dict[str, list[float]] = {}
    for start, stop in chunk_bounds(len(frame), size):
        window = DriftWindow({k: v for k, v in profile.items() if k != "score"})
        window.add(frame.iloc[start:stop])
        for name, feature in window.report(psi_alert=math.inf)["features"].items():
            if feature["psi"] is not None:
                psi.setdefault(name, []).append(float(feature["psi"]))
    return {"chunk_rows": size, "psi": psi}


def performance_chunks(labels, scores, size: int) -> dict:
    """AUC and log loss of each `size`-row chunk of the holdout's scores (in time order)."""
    from app.monitoring.performance import window_metrics

    y, p = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    metrics = [window_metrics(p[a:b], y[a:b]) for a, b in chunk_bounds(len(y), size)]
    return {
        "chunk_rows": size,
        **{name: [m[name] for m in metrics if m[name] is not None] for name in ("auc", "log_loss")},
    }


def reference_bands(
    unseen: pd.DataFrame, profile: Mapping, labels, scores, *, window: int, performance_window: int
) -> dict:
    """What a trained model's profile keeps for the monitor's bands (`profile["bands"]`):
    `unseen` are reference rows the profile was not made from, in time order."""
    return {
        "drift": drift_chunks(unseen, profile, window),
        "performance": performance_chunks(labels, scores, performance_window),
    }


def learn(bundle, splits, label: str, *, window: int, performance_window: int) -> dict:
    """`reference_bands` of a trained bundle: PSI chunks of its validation and holdout rows and
    the scores of the newest holdout rows (as many as MAX_CHUNKS chunks hold)."""
    from app.model.predictor import Predictor

    holdout = splits.holdout.tail(MAX_CHUNKS * performance_window)
    scores = Predictor.from_bundle(bundle).predict_proba(holdout)
    return reference_bands(
        pd.concat([splits.valid, splits.holdout], ignore_index=True),
        bundle.profile,
        holdout[label].to_numpy(dtype=int),
        scores,
        window=window,
        performance_window=performance_window,
    )


@dataclass(frozen=True)
class Spread:
    """The chunks' mean and standard deviation of one metric."""

    mean: float
    std: float
    chunks: int

    @property
    def high(self) -> float:
        return self.mean + SIGMAS * self.std

    @property
    def low(self) -> float:
        return self.mean - SIGMAS * self.std


def spread(section: Mapping | None, metric: str, window: int, feature: str | None = None) -> Spread | None:
    """The learned spread of `metric` (of `feature`, for PSI) at this window size; None when
    the chunks were another size or too few."""
    if not section or section.get("chunk_rows") != window:
        return None
    values = section.get(metric) or {}
    values = values.get(feature) if feature is not None else values
    if not values or len(values) < MIN_CHUNKS:
        return None
    v = np.asarray(values, dtype=float)
    return Spread(float(v.mean()), float(v.std(ddof=1)), len(v))


def psi_thresholds(
    profile: Mapping, *, window: int, fixed: float, mode: str
) -> tuple[dict[str, float], BandKind]:
    """Per feature the PSI over which it drifts: its learned band's top in `learned` mode
    (where every feature has one), else `fixed` for all."""
    section = (profile.get("bands") or {}).get("drift")
    features = [*profile.get("numeric", {}), *profile.get("categorical", {})]
    if mode == LEARNED and features:
        learned = {f: spread(section, "psi", window, f) for f in features}
        if all(s is not None for s in learned.values()):
            return {f: s.high for f, s in learned.items()}, LEARNED
    return dict.fromkeys(features, fixed), FIXED


@dataclass(frozen=True)
class PerformanceBand:
    """Where a window's labelled metrics count as decayed: AUC under `auc_low`, or log loss
    over `log_loss_high` (learned bands only; the fixed band judges AUC alone)."""

    auc_low: float | None
    log_loss_high: float | None
    kind: BandKind
    reference_auc: float | None

    def decayed(self, auc: float | None, log_loss: float | None) -> bool:
        low = auc is not None and self.auc_low is not None and auc < self.auc_low
        high = log_loss is not None and self.log_loss_high is not None and log_loss > self.log_loss_high
        return low or high


def performance_band(
    profile: Mapping, reference_auc: float | None, *, window: int, auc_drop: float, mode: str
) -> PerformanceBand:
    """The band a model version's labelled windows are judged by: learned from its holdout's
    chunks in `learned` mode when there are enough of this window's size, else its holdout AUC
    less `auc_drop`."""
    section = (profile.get("bands") or {}).get("performance")
    auc, loss = spread(section, "auc", window), spread(section, "log_loss", window)
    if mode == LEARNED and auc is not None and loss is not None:
        return PerformanceBand(auc.low, loss.high, LEARNED, reference_auc)
    low = None if reference_auc is None or math.isnan(reference_auc) else reference_auc - auc_drop
    return PerformanceBand(low, None, FIXED, reference_auc)
