"""Rolling labelled metrics per variant: what outcomes say about a model, window by window.

Input drift and the label-free estimate (estimate.py) assume that the relation between the
features and the outcome holds. When it changes (concept drift) the inputs look the same and
the scores stay confident: only outcomes show it. Each variant's counted outcomes (those the
caps let through, counts.py) fill tumbling windows of `monitor.performance_window`; a full
window reports its AUC, log loss and calibration error beside the label-free estimate of the
same scores, and is judged against the band of the model version that scored it (bands.py:
learned from that version's holdout, or its holdout AUC less `monitor.auc_drop`). A new model
version in a variant starts a new window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np

from app.monitoring.bands import PerformanceBand
from app.monitoring.estimate import expected_auc
from app.monitoring.messages import COMPLETE, PARTIAL, PerformancePoint, PerformanceWindow
from app.training.evaluate import expected_calibration_error

HISTORY = 1_000  # completed windows remembered
EPS = 1e-7
METRICS = ("auc", "log_loss", "calibration_error", "accuracy", "estimated_auc")


def window_metrics(scores, labels) -> dict:
    """AUC, log loss, calibration error and accuracy of scored outcomes, with the label-free
    AUC estimate of the same scores (None where undefined: one class only, no rows)."""
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(np.asarray(scores, dtype=float), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=int)
    if len(y) == 0:
        return {"n": 0, **dict.fromkeys(METRICS)}
    return {
        "n": len(y),
        "auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "calibration_error": expected_calibration_error(y, p),
        "accuracy": float(np.mean((p >= 0.5) == y)),
        "estimated_auc": expected_auc(p),
    }


class _Window:
    """The outcomes of one model version in a variant, filling."""

    def __init__(self, version: int | None):
        self.version = version
        self.scores: list[float] = []
        self.labels: list[int] = []


BandFor = Callable[[int | None], PerformanceBand | None]


class PerformanceTracker:
    """`band_for(version)`: the band a model version's windows are judged by (None: unjudged)."""

    def __init__(self, window: int, band_for: BandFor, history: int = HISTORY):
        self.window = window
        self.band_for = band_for
        self.current: dict[str, _Window] = {}
        self.complete: dict[str, PerformanceWindow] = {}
        self.history: deque[PerformancePoint] = deque(maxlen=history)

    def add(
        self, variant: str, version: int | None, score: float, label: int, now: float | None = None
    ) -> None:
        """One counted outcome of `variant`, scored by model `version`."""
        w = self.current.get(variant)
        if w is None or w.version != version:
            w = self.current[variant] = _Window(version)
            if variant in self.complete and self.complete[variant].model_version != version:
                del self.complete[variant]  # the last report was another model's
        w.scores.append(float(score))
        w.labels.append(int(label))
        if len(w.labels) >= self.window:
            report = self._report(w, COMPLETE)
            self.complete[variant] = report
            self.current[variant] = _Window(version)
            self.history.append(
                PerformancePoint(
                    at=time.time() if now is None else now,
                    variant=variant,
                    model_version=version,
                    n=report.n,
                    auc=report.auc,
                    log_loss=report.log_loss,
                    decayed=report.decayed,
                )
            )

    def _report(self, w: _Window, kind: str) -> PerformanceWindow:
        m = window_metrics(w.scores, w.labels)
        band = self.band_for(w.version) if kind == COMPLETE else None
        return PerformanceWindow(
            **m,
            model_version=w.version,
            window=kind,
            band=band.kind if band else None,
            auc_low=band.auc_low if band else None,
            log_loss_high=band.log_loss_high if band else None,
            reference_auc=band.reference_auc if band else None,
            decayed=bool(band and band.decayed(m["auc"], m["log_loss"])),
        )

    def windows(self) -> dict[str, PerformanceWindow]:
        """Per variant: the last complete window, or the partial one before any."""
        out = {}
        for variant in sorted(set(self.current) | set(self.complete)):
            w = self.current.get(variant)
            out[variant] = self.complete.get(variant) or self._report(w, PARTIAL)
        return out

    def resize(self, window: int) -> None:
        """A new window size, from the next window on."""
        self.window = window


def decay_run(points: Iterable[PerformancePoint], variant: str) -> tuple[int, float]:
    """(windows, seconds): the run of consecutive decayed complete windows `variant` is in now."""
    run: list[float] = []
    for p in points:
        if p.variant == variant:
            run = [*run, p.at] if p.decayed else []
    return len(run), (run[-1] - run[0]) if run else 0.0
