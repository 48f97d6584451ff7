"""Holdout evaluation: metrics overall and per slice, calibration, and the evaluation gate.

Pure functions over labels and scores; the gate compares a candidate with the champion
scored on the same holdout, so a model is never judged against an easier, older test set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "log_loss": False, "brier": False}
MIN_SLICE_ROWS = 30  # smaller slices give metrics too noisy to read


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    both = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
    }


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted vs observed rate per equal-width probability bin (a reliability curve)."""
    idx = np.minimum((np.asarray(p) * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            rows.append(
                {
                    "bin": b,
                    "n": int(mask.sum()),
                    "predicted": float(np.mean(p[mask])),
                    "observed": float(np.mean(np.asarray(y)[mask])),
                }
            )
    return rows


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    table = calibration_table(y, p, bins)
    n = sum(r["n"] for r in table)
    return float(sum(r["n"] / n * abs(r["predicted"] - r["observed"]) for r in table)) if n else float("nan")


def sliced_metrics(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, columns: list[str]) -> dict:
    """Metrics per value of each categorical column (slices under MIN_SLICE_ROWS skipped)."""
    out: dict[str, dict[str, dict]] = {}
    for col in columns:
        values = frame[col].astype(str).where(frame[col].notna(), "<missing>").to_numpy()
        out[col] = {}
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() >= MIN_SLICE_ROWS:
                out[col][value] = binary_metrics(y[mask], p[mask])
    return out


def passes_gate(candidate: dict, champion: dict | None, *, metric: str, margin: float) -> tuple[bool, str]:
    """Register the candidate only if it is not worse than the champion by more than `margin`."""
    if champion is None:
        return True, "no champion yet"
    c, b = candidate[metric], champion[metric]
    if np.isnan(c):
        return False, f"candidate {metric} is undefined"
    worse_by = (b - c) if HIGHER_IS_BETTER[metric] else (c - b)
    verdict = worse_by <= margin
    relation = "within" if verdict else "beyond"
    return (
        verdict,
        f"{metric} {c:.4f} vs champion {b:.4f}: worse by {worse_by:+.4f}, {relation} margin {margin}",
    )
