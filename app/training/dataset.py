"""The training set: warehouse labels joined point-in-time to Feast features, split by time.

The holdout is the most recent slice and validation the slice before it, so nothing from the
future of a row leaks into the rows a model learns from. Rows from more than one source (the
warehouse and labelled production traffic, `app.monitoring.training_data`) are split each by
its own time, so every source reaches training, validation and the holdout. Every problem
that would make training meaningless is refused here, before any Ray Train worker starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

from app.config import AppConfig
from app.data import tables, warehouse
from app.data.warehouse import read_warehouse
from app.features.store import FeatureClient
from app.features.transforms import feature_spec


class TrainingDataError(ValueError):
    """A training set that cannot produce a meaningful model."""


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    # Where the rows came from, recorded as the trained model's lineage (`training_data`, ...).
    lineage: dict[str, str] = field(default_factory=dict, compare=False)

    def fingerprint(self) -> str:
        """Hash of the rows' keys and labels: lineage for the model trained on them."""
        h = hashlib.sha256()
        for part in (self.train, self.valid, self.holdout):
            h.update(pd.util.hash_pandas_object(part.iloc[:, :3], index=False).to_numpy().tobytes())
        return h.hexdigest()[:16]


def load_frame(cfg: AppConfig, snapshot_id: int | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every warehouse label at a snapshot (default: the current one) with its point-in-time
    features, and the lineage that names the snapshot."""
    ds = cfg.dataset
    at = tables.version(warehouse.open_table(cfg, create=False), snapshot_id)
    labels = (
        read_warehouse(cfg, at.snapshot_id).select_columns([ds.entity, ds.timestamp, ds.label]).to_pandas()
    )
    frame = FeatureClient(cfg).historical(labels).to_pandas()
    return frame, {"warehouse_snapshot": str(at.snapshot_id), "warehouse_rows": str(len(frame))}


def time_split(df: pd.DataFrame, cfg: AppConfig) -> Splits:
    """Split by timestamp quantiles: train < valid < holdout in time."""
    ts = cfg.dataset.timestamp
    df = df.sort_values(ts, kind="stable").reset_index(drop=True)
    t = cfg.model
    valid_at = df[ts].quantile(1 - t.valid_fraction - t.holdout_fraction)
    holdout_at = df[ts].quantile(1 - t.holdout_fraction)
    return Splits(
        train=df[df[ts] < valid_at].reset_index(drop=True),
        valid=df[(df[ts] >= valid_at) & (df[ts] < holdout_at)].reset_index(drop=True),
        holdout=df[df[ts] >= holdout_at].reset_index(drop=True),
    )


def split_sources(frames: dict[str, pd.DataFrame], cfg: AppConfig) -> Splits:
    """Each source's rows split by their own time quantiles, the parts joined: train, valid and
    holdout each hold every source. One time split over both would put all production rows
    (newer than the warehouse's) in valid and holdout, and training would never see them."""
    used = {name: frame for name, frame in frames.items() if len(frame)}
    entity = cfg.dataset.entity
    if len({str(f[entity].dtype) for f in used.values()}) > 1:  # e.g. int ids and string keys
        used = {name: f.assign(**{entity: f[entity].astype(str)}) for name, f in used.items()}
    parts = [time_split(frame, cfg) for frame in used.values()]

    def joined(split: str) -> pd.DataFrame:
        return pd.concat([getattr(p, split) for p in parts], ignore_index=True)

    return Splits(train=joined("train"), valid=joined("valid"), holdout=joined("holdout"))


def check_splits(splits: Splits, cfg: AppConfig) -> None:
    label, names = cfg.dataset.label, feature_spec(cfg).names
    for name in ("train", "valid", "holdout"):
        part = getattr(splits, name)
        if len(part) < cfg.model.min_rows:
            raise TrainingDataError(
                f"the {name} split has {len(part)} rows, fewer than model.min_rows={cfg.model.min_rows}; "
                "load more data or lower the split fractions"
            )
    for name in ("train", "valid", "holdout"):
        check_classes(getattr(splits, name), name, label, cfg.model.min_class_rows)
    missing = [c for c in names if c not in splits.train.columns]
    if missing:
        raise TrainingDataError(f"features {missing} are not in the training set")
    empty = [c for c in names if splits.train[c].isna().all()]
    if empty:
        raise TrainingDataError(f"features {empty} are null in every training row")
    check_cardinality(splits.train, cfg.dataset.categorical)


def check_classes(part: pd.DataFrame, name: str, label: str, least: int) -> None:
    """Both classes, each at least `least` times: a split without one trains or measures nothing
    (a holdout of one class has no AUC), and a handful of rows of the rare class gives a
    model that learns, or a gate that measures, noise."""
    counts = part[label].value_counts()
    classes = sorted(counts.index.tolist())
    if len(classes) < 2:
        raise TrainingDataError(
            f"the {name} split has one class only ({label}={classes}); a binary model needs both"
        )
    rare = counts.idxmin()
    if counts[rare] < least:
        raise TrainingDataError(
            f"the {name} split has {counts[rare]} rows of {label}={rare} "
            f"({counts[rare] / len(part):.2%} of {len(part)}), fewer than model.min_class_rows={least}; "
            "load more data or lower model.min_class_rows"
        )


# A categorical with more distinct values than this share of the training rows (and more than
# MIN_LEVELS) names rows rather than groups of them: an identifier a model memorises and cannot
# use on new rows, whose levels it has never seen.
MAX_LEVEL_SHARE, MIN_LEVELS = 0.5, 100


def check_cardinality(train: pd.DataFrame, categorical: list[str]) -> None:
    for c in categorical:
        levels = train[c].nunique(dropna=True) if c in train.columns else 0
        if levels > max(MIN_LEVELS, MAX_LEVEL_SHARE * len(train)):
            raise TrainingDataError(
                f"dataset.categorical: {c!r} has {levels} distinct values in {len(train)} training rows, "
                "an identifier rather than a category; drop it from dataset.categorical"
            )


def build_splits(cfg: AppConfig, snapshot_id: int | None = None) -> Splits:
    """The warehouse's training set at a snapshot (default: the current one), split by time
    and checked."""
    frame, lineage = load_frame(cfg, snapshot_id)
    splits = time_split(frame, cfg)
    check_splits(splits, cfg)
    return Splits(
        splits.train, splits.valid, splits.holdout, lineage={"training_data": "warehouse", **lineage}
    )
