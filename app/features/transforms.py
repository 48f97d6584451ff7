"""Derived features as pure batch functions: time-of-event, numeric buckets and crosses.

Training (through the feature table) and serving (on raw request features) both call
`add_features`, so the two can never derive a feature differently.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.config import AppConfig

FEATURE_TIMESTAMP = "feature_timestamp"  # the feature row's own time (µs), for TTL checks
CROSS_SEP = "|"


@dataclass(frozen=True)
class FeatureSpec:
    """Every model-input column, by kind, in a stable order."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]  # raw categoricals, buckets and crosses: all strings
    time: tuple[str, ...]  # small integers

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.time, *self.categorical]


def utc_us(ts: pd.Series) -> pd.Series:
    """Timestamps as UTC microseconds: one dtype, so joins never mix ns and us columns."""
    return pd.to_datetime(ts, utc=True).astype("datetime64[us, UTC]")


def epoch_us(ts: pd.Series) -> pd.Series:
    """UTC timestamps as integer microseconds since the epoch (unit-independent)."""
    return (pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")


def cross_name(cross: list[str]) -> str:
    return "_x_".join(cross)


def feature_spec(cfg: AppConfig) -> FeatureSpec:
    ds, ft = cfg.dataset, cfg.features
    derived_cats = [f"{c}_bucket" for c in ft.buckets] + [cross_name(x) for x in ft.crosses]
    return FeatureSpec(
        numeric=tuple(ds.numeric), categorical=tuple(ds.categorical + derived_cats), time=tuple(ft.time)
    )


def time_features(ts: pd.Series, names: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Calendar features of UTC timestamps; a missing timestamp gives -1 (its own category)."""
    ts = pd.to_datetime(ts, utc=True)
    parts = {
        "hour": ts.dt.hour,
        "day_of_week": ts.dt.dayofweek,
        "day_of_month": ts.dt.day,
        "month": ts.dt.month,
        "is_weekend": (ts.dt.dayofweek >= 5).astype("float").where(ts.notna()),
    }
    return pd.DataFrame({n: parts[n].fillna(-1).astype("int64") for n in names}, index=ts.index)


def bucket_labels(edges: list[float]) -> list[str]:
    e = [f"{x:g}" for x in edges]
    return [f"<{e[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(e)), f">={e[-1]}"]


def bucketize(values: pd.Series, edges: list[float]) -> pd.Series:
    """Label each value with its bucket (left-closed); a missing value stays missing."""
    labels = np.array(bucket_labels(edges), dtype=object)
    num = pd.to_numeric(values, errors="coerce").astype("float64")
    idx = np.searchsorted(np.asarray(edges, dtype=float), num.to_numpy(), side="right")
    out = pd.Series(labels[np.clip(idx, 0, len(labels) - 1)], index=values.index, dtype=object)
    return out.where(num.notna(), None)


def cross(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Join the columns' values into one category; missing if any part is missing."""
    parts = frame[columns].astype("string")
    joined = parts.iloc[:, 0].str.cat([parts[c] for c in columns[1:]], sep=CROSS_SEP)
    return joined.astype(object).where(parts.notna().all(axis=1), None)


def add_features(batch: pd.DataFrame, cfg: AppConfig) -> pd.DataFrame:
    """Append time, bucket and cross features to a batch that has the dataset's columns."""
    ft = cfg.features
    out = batch.copy()
    ts_col = cfg.dataset.timestamp
    if ft.time:
        out[list(ft.time)] = time_features(out[ts_col], ft.time)
    for col, edges in ft.buckets.items():
        out[f"{col}_bucket"] = bucketize(out[col], edges)
    for c in ft.crosses:
        out[cross_name(c)] = cross(out, c)
    return out


def feature_table_batch(batch: pd.DataFrame, cfg: AppConfig) -> pd.DataFrame:
    """A warehouse batch -> the Feast offline feature table (no label: it is not a feature)."""
    ds = cfg.dataset
    out = add_features(batch, cfg)
    out[FEATURE_TIMESTAMP] = epoch_us(out[ds.timestamp])
    return out[[ds.entity, ds.timestamp, *feature_spec(cfg).names, FEATURE_TIMESTAMP]]
