"""The production table: served rows joined to the outcomes reported for them, for training.

A row is a prediction as it was scored: the traffic log keeps the model inputs the serving
path derived (with `add_features`, the function training uses), so nothing is recomputed and
a row holds what the model saw. Its outcome is the one a producer reported (`/feedback`).
Point in time: a table is built for a cutoff and holds only rows served and labelled at or
before it, so a training run never learns from an outcome it could not have known then, and
only rows served within `retrain.production_days` of it. Shadow copies and failed rows are
left out, one row per request id (the log's reader, shared with online learning, keeps the
first record of an id).

The table is hive-partitioned by the date a row was served (`date=YYYY-MM-DD/`) and written
whole or not at all: a build goes into a folder of its own and `current.json` is switched to
it atomically; the build it replaced stays (a reader may still have it open), older ones go.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from app.config import AppConfig
from app.features.transforms import feature_spec, utc_us
from app.files import atomic_write_text, fsync_dir
from app.monitoring.traffic import labelled_traffic

log = logging.getLogger(__name__)
MANIFEST = "current.json"
BUILD_PREFIX = "build-"
# Columns kept beside the features and the outcome: enough to trace a row back to its request.
SERVED_AT, LABELLED_AT = "served_at", "labelled_at"
KEPT = ("request_id", SERVED_AT, LABELLED_AT, "model_version", "variant", "key")
PARTITIONING = pads.partitioning(pa.schema([("date", pa.string())]), flavor="hive")


@dataclass(frozen=True)
class ProductionTable:
    """One build: where it is, the point in time it was built for, and what it holds."""

    build: str  # the build's folder name under storage `production/`
    cutoff: str  # ISO time in UTC: nothing served or labelled after it is in the table
    since: str  # rows served after this time (the cutoff less `retrain.production_days`)
    rows: int
    dates: tuple[str, ...] = ()


def labelled_rows(cfg: AppConfig, *, cutoff: pd.Timestamp, since: pd.Timestamp) -> pd.DataFrame:
    """The table's rows for this window: request columns, the model's features as served, the
    outcome (named as the dataset's label) and the date partition, oldest first."""
    label, names = cfg.dataset.label, feature_spec(cfg).names
    rows = labelled_traffic(cfg.storage.traffic, label, since=str(since), until=str(cutoff))
    columns = [*KEPT, *names, label, "date"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.rename(columns={"logged_at": SERVED_AT})
    rows[SERVED_AT] = utc_us(rows[SERVED_AT])
    rows[LABELLED_AT] = utc_us(rows[LABELLED_AT])
    for name in names:  # a feature the logging model did not have is missing, not an error
        if name not in rows.columns:
            rows[name] = None
    spec = feature_spec(cfg)
    for name in spec.numeric:
        rows[name] = pd.to_numeric(rows[name], errors="coerce").astype("float64")
    for name in spec.categorical:
        rows[name] = rows[name].astype(object).where(rows[name].notna(), None)
    rows[label] = rows[label].astype("int64")
    rows["key"] = rows["key"].astype(str)
    rows["date"] = rows[SERVED_AT].dt.strftime("%Y-%m-%d")
    return rows[columns].sort_values(SERVED_AT, kind="stable").reset_index(drop=True)


def build_table(cfg: AppConfig, *, cutoff: datetime | pd.Timestamp | None = None) -> ProductionTable:
    """Build the production table for `cutoff` (now, if not given) and make it the current one."""
    at = pd.Timestamp(cutoff if cutoff is not None else datetime.now(timezone.utc))
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    since = at - pd.Timedelta(days=cfg.retrain.production_days)
    rows = labelled_rows(cfg, cutoff=at, since=since)
    root = cfg.storage.production
    name = f"{BUILD_PREFIX}{at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
    folder = root / name
    folder.mkdir(parents=True)
    if len(rows):
        table = pa.Table.from_pandas(rows, preserve_index=False)
        pads.write_dataset(
            table, folder, format="parquet", partitioning=PARTITIONING, basename_template="part-{i}.parquet"
        )
        durable(folder)  # on disk before the manifest can name it
    built = ProductionTable(
        build=name,
        cutoff=at.isoformat(),
        since=since.isoformat(),
        rows=len(rows),
        dates=tuple(sorted(rows["date"].unique())),
    )
    previous = current(cfg)
    atomic_write_text(root / MANIFEST, json.dumps(asdict(built)))
    prune(root, keep={name, previous.build if previous else name})
    log.info("production table %s: %d labelled rows served %s .. %s", name, len(rows), since, at)
    return built


def current(cfg: AppConfig) -> ProductionTable | None:
    """The current build, or None (none built yet, or its manifest unreadable: one warning)."""
    path = cfg.storage.production / MANIFEST
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text())
        return ProductionTable(**{**found, "dates": tuple(found.get("dates", ()))})
    except (OSError, ValueError, TypeError) as exc:
        log.warning("production table manifest %s is unreadable (%s): treated as absent", path, exc)
        return None


def read_table(cfg: AppConfig, table: ProductionTable | None = None) -> pd.DataFrame:
    """The rows of a build (the current one by default); empty when there are none."""
    table = table or current(cfg)
    if table is None or table.rows == 0:
        return pd.DataFrame()
    data = pads.dataset(cfg.storage.production / table.build, format="parquet", partitioning=PARTITIONING)
    rows = data.to_table().to_pandas()
    return rows.sort_values(SERVED_AT, kind="stable").reset_index(drop=True)


def durable(folder: Path) -> None:
    """Flush a build's files and folders to disk: a power cut after the switch finds them whole."""
    for path in folder.rglob("*.parquet"):
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    for sub in [*folder.glob("date=*"), folder]:
        fsync_dir(sub)


# A build younger than this may still be written, or read, by another run (a build is named by
# its cutoff, not by when it was made, so names cannot tell).
PRUNE_AFTER_S = 3600


def prune(root: Path, *, keep: set[str], now: float | None = None) -> None:
    """Remove builds other than `keep` made more than PRUNE_AFTER_S ago. A build a crash left
    half-written is removed here too, an hour later."""
    now = time.time() if now is None else now
    for folder in root.glob(f"{BUILD_PREFIX}*"):
        try:
            old = now - folder.stat().st_mtime > PRUNE_AFTER_S
        except OSError:  # removed meanwhile
            continue
        if folder.name not in keep and old:
            shutil.rmtree(folder, ignore_errors=True)
