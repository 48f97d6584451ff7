"""Predictor: one registry model version, ready to score feature rows (no Ray, no HTTP).

Rows come either from the online store (every model feature present) or as raw dataset
features from a client; raw rows go through `add_features`, the function training used, so
time, bucket and cross features cannot be derived differently when serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import torch

from app.config import AppConfig
from app.features.transforms import add_features
from app.registry.bundle import ModelBundle
from app.training.loop import predict_proba
from app.training.model import TabularMLP


@dataclass
class Predictor:
    bundle: ModelBundle
    version: int
    threshold: float = 0.5

    def __post_init__(self) -> None:
        self.net: TabularMLP = self.bundle.model()  # built once, not per request
        pre = self.bundle.preprocessor
        self._vocab = {c: set(pre.vocab_[c]) for c in pre.categorical}

    @property
    def features(self) -> list[str]:
        return self.bundle.features

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probability per row of a frame holding the model's features."""
        arrays = self.bundle.preprocessor.transform_batch(frame)
        with torch.inference_mode():
            return predict_proba(self.net, arrays["numeric"], arrays["categorical"])

    def labels(self, scores: np.ndarray) -> np.ndarray:
        return (scores >= self.threshold).astype(np.int64)

    def unknown_categories(self, frame: pd.DataFrame) -> np.ndarray:
        """Per row, how many categorical values the model never saw in training (served anyway)."""
        counts = np.zeros(len(frame), dtype=np.int64)
        for col, vocab in self._vocab.items():
            values = frame[col]
            counts += (values.notna() & ~values.astype(str).isin(vocab)).to_numpy()
        return counts


def raw_rows_to_frame(rows: list[dict], cfg: AppConfig, *, now: datetime | None = None) -> pd.DataFrame:
    """Client-supplied dataset features -> a frame with every model feature derived.

    A row without the dataset's timestamp is scored as of now (its time features).
    """
    ds = cfg.dataset
    frame = pd.DataFrame.from_records(rows, columns=[*ds.features, ds.timestamp])
    now = now or datetime.now(timezone.utc)
    frame[ds.timestamp] = pd.to_datetime(frame[ds.timestamp], utc=True, errors="coerce").fillna(
        pd.Timestamp(now)
    )
    for col in ds.numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in ds.categorical:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return add_features(frame, cfg)
