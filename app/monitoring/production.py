"""The production table: served rows joined to the outcomes reported for them, for training.

A row is a prediction as it was scored: the traffic log keeps the model inputs the serving
path derived (with `add_features`, the function training uses), so nothing is recomputed and
a row holds what the model saw. Its outcome is the one a producer reported (`/feedback`).
Point in time: a table is built for a cutoff and holds only rows served and labelled at or
before it, so a training run never learns from an outcome it could not have known then, and
only rows served within `retrain.production_days` of it. Shadow copies and failed rows are
left out, one row per request id (the log's reader, shared with online learning, keeps the
first record of an id).

The table is an Iceberg table (app/data/tables.py), `mlsys.production`, partitioned by the
date a row was served. A build replaces its rows in one commit (an overwrite), so a reader sees
one build or the next, never a mix; the snapshot names the build, its cutoff and window, and
earlier builds stay readable at their snapshots (the one a training run used, as its lineage
records). The current build's description is a table property set in the same commit: an
empty build has no snapshot of its own.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa

from app.config import AppConfig
from app.data import tables
from app.features.transforms import feature_spec, utc_us
from app.monitoring.traffic import labelled_traffic, traffic_log

log = logging.getLogger(__name__)
NAME = "production"
BUILD_PREFIX = "build-"
BUILD_KEY, CURRENT_KEY = "mlsys.build", "mlsys.current-build"
# Columns kept beside the features and the outcome: enough to trace a row back to its request.
SERVED_AT, LABELLED_AT = "served_at", "labelled_at"
KEPT = ("request_id", SERVED_AT, LABELLED_AT, "model_version", "variant", "key")


@dataclass(frozen=True)
class ProductionTable:
    """One build: where it is, the point in time it was built for, and what it holds."""

    build: str  # the build's name, in its snapshot's summary
    cutoff: str  # ISO time in UTC: nothing served or labelled after it is in the table
    since: str  # rows served after this time (the cutoff less `retrain.production_days`)
    rows: int
    dates: tuple[str, ...] = ()
    snapshot_id: int | None = None  # the table's snapshot holding its rows (None: no rows)


def labelled_rows(cfg: AppConfig, *, cutoff: pd.Timestamp, since: pd.Timestamp) -> pd.DataFrame:
    """The table's rows for this window: request columns, the model's features as served, the
    outcome (named as the dataset's label) and the date partition, oldest first."""
    label, names = cfg.dataset.label, feature_spec(cfg).names
    rows = labelled_traffic(traffic_log(cfg.storage), label, since=str(since), until=str(cutoff))
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


def production_schema(cfg: AppConfig) -> pa.Schema:
    """The table's columns: the request's, the model's features as served, the outcome."""
    spec, utc = feature_spec(cfg), pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("request_id", pa.string()),
            (SERVED_AT, utc),
            (LABELLED_AT, utc),
            ("model_version", pa.int64()),
            ("variant", pa.string()),
            ("key", pa.string()),
            *((name, pa.float64()) for name in spec.numeric),
            *((name, pa.int64()) for name in spec.time),  # small integers
            *((name, pa.string()) for name in spec.categorical),
            (cfg.dataset.label, pa.int64()),
            ("date", pa.string()),
        ]
    )


def open_table(cfg: AppConfig, schema: pa.Schema | None = None):
    """The production table (None if there is none and no `schema` to create it with); a
    feature the config added since is added to the table's schema."""
    from pyiceberg.transforms import IdentityTransform

    table = tables.open_table(cfg.storage, NAME)
    if schema is None:
        return table
    if table is None:
        return tables.create_table(
            cfg.storage,
            NAME,
            schema,
            local=cfg.storage.production,
            partition=("date", IdentityTransform(), "date"),
        )
    missing = [n for n in schema.names if n not in table.schema().column_names]
    if missing:
        with table.update_schema() as update:
            update.union_by_name(schema)
        log.info("production table: added %s to its schema", ", ".join(missing))
    return table


def forget(cfg: AppConfig) -> None:
    """Drop the table from the catalog, keeping its files (the demo archives them with the rest
    of a run; `register_table` with its last metadata file would bring it back)."""
    table = open_table(cfg)
    if table is not None:
        tables.catalog(cfg.storage).drop_table(table.name())


def build_table(cfg: AppConfig, *, cutoff: datetime | pd.Timestamp | None = None) -> ProductionTable:
    """Build the production table for `cutoff` (now, if not given) and make it the current one."""
    at = pd.Timestamp(cutoff if cutoff is not None else datetime.now(timezone.utc))
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    since = at - pd.Timedelta(days=cfg.retrain.production_days)
    rows = labelled_rows(cfg, cutoff=at, since=since)
    schema = production_schema(cfg)
    name = f"{BUILD_PREFIX}{at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
    built = ProductionTable(
        build=name,
        cutoff=at.isoformat(),
        since=since.isoformat(),
        rows=len(rows),
        dates=tuple(sorted(rows["date"].unique())),
    )
    table = open_table(cfg, schema)
    data = pa.Table.from_pandas(rows, schema=schema, preserve_index=False)
    tx = table.transaction()
    if tables.version(table).rows:  # replace the rows there (an overwrite of none would warn)
        tx.overwrite(data, snapshot_properties={BUILD_KEY: name})
    elif len(data):
        tx.append(data, snapshot_properties={BUILD_KEY: name})
    tx.set_properties({CURRENT_KEY: json.dumps(asdict(built))})
    tx.commit_transaction()
    log.info("production table %s: %d labelled rows served %s .. %s", name, len(rows), since, at)
    return _with_snapshot(table.refresh(), built)


def _with_snapshot(table, built: ProductionTable) -> ProductionTable:
    """The build with the snapshot that holds its rows (None for an empty build)."""
    for snapshot in reversed(table.snapshots()):
        if snapshot.summary.additional_properties.get(BUILD_KEY) == built.build:
            return replace(built, snapshot_id=snapshot.snapshot_id)
    return built


def current(cfg: AppConfig) -> ProductionTable | None:
    """The current build, or None (none built yet, or its description unreadable: one warning)."""
    table = open_table(cfg)
    if table is None or CURRENT_KEY not in table.properties:
        return None
    try:
        found = json.loads(table.properties[CURRENT_KEY])
        built = ProductionTable(**{**found, "dates": tuple(found.get("dates", ()))})
    except (ValueError, TypeError) as exc:
        log.warning("production table's current build is unreadable (%s): treated as absent", exc)
        return None
    return _with_snapshot(table, built)


def read_table(cfg: AppConfig, table: ProductionTable | None = None) -> pd.DataFrame:
    """The rows of a build (the current one by default); empty when there are none."""
    table = table or current(cfg)
    if table is None or table.rows == 0 or table.snapshot_id is None:
        return pd.DataFrame()
    rows = open_table(cfg).scan(snapshot_id=table.snapshot_id).to_arrow().to_pandas()
    return rows.sort_values(SERVED_AT, kind="stable").reset_index(drop=True)
