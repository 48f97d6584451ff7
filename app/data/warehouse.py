"""The warehouse: an Iceberg table (app/data/tables.py) of the data contract's typed rows,
written by ETL and read by Ray Data.

Rows are partitioned by the day of their event timestamp (UTC), as the feature table is. The
data files are written by ETL's own merge tasks (one file per day and run) and added in one
commit by the driver (`commit_files`); the writer's own commit retries are off, since a merge
must be redone against what another writer committed, never blindly re-applied.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from app.config import AppConfig
from app.data import tables
from app.data.schema import DataError, arrow_schema

NAME = "warehouse"
WAREHOUSE = f"{tables.NAMESPACE}.{NAME}"
DAY = "day"
_EPOCH = dt.date(1970, 1, 1)


def open_table(cfg: AppConfig, *, create: bool = True):
    """The warehouse table, created on first use (unless `create` is off: then a missing table
    is the "run etl first" error)."""
    from pyiceberg.transforms import DayTransform

    table = tables.open_table(cfg.storage, NAME)
    if table is not None:
        return table
    if not create:
        raise empty(cfg)
    return tables.create_table(
        cfg.storage,
        NAME,
        arrow_schema(cfg.dataset, with_meta=False),
        local=cfg.storage.warehouse,
        partition=(cfg.dataset.timestamp, DayTransform(), DAY),
        **{"commit.retry.num-retries": "0"},
    )


def empty(cfg: AppConfig) -> DataError:
    """The error of a step that needs rows before ETL has loaded any."""
    return DataError(f"the warehouse {where(cfg)} is empty: run `mlsys etl` first")


def where(cfg: AppConfig) -> str:
    """The warehouse as a user would look for it: its folder, or its name in another catalog."""
    if not cfg.storage.catalog:
        return str(cfg.storage.warehouse)
    return f"{WAREHOUSE} (catalog {cfg.storage.catalog.get('uri', '?')})"


def day_label(days_since_epoch: int) -> str:
    return (_EPOCH + dt.timedelta(days=int(days_since_epoch))).isoformat()


def day_files(table, snapshot_id: int | None = None) -> dict[str, list[str]]:
    """The table's data files by day (ISO date), at a snapshot (default: the current one)."""
    if table.current_snapshot() is None:
        return {}
    files: dict[str, list[str]] = {}
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        files.setdefault(day_label(task.file.partition[0]), []).append(task.file.file_path)
    return {day: sorted(paths) for day, paths in sorted(files.items())}


def data_file(table, day: str, name: str) -> str:
    """Where a new data file of `day` goes: the table's data folder, Hive-style by day."""
    return f"{table.location().rstrip('/')}/data/{DAY}={day}/{name}.parquet"


def commit_files(table, paths: list[str], properties: dict[str, str]) -> int:
    """Add written data files to the table in one commit; returns the new snapshot's id.

    Raises CommitConflict when another writer committed since `table` was loaded (the files
    are then not part of the table; the caller merges again against the new snapshot)."""
    from pyiceberg.exceptions import CommitFailedException

    tx = table.transaction()
    # No check for files the table already has (a scan of every manifest): a new file's name
    # carries its run's id and attempt, so it is never one of them.
    tx.add_files(paths, snapshot_properties=properties, check_duplicate_files=False)
    try:
        committed = tx.commit_transaction()
    except CommitFailedException as exc:
        raise tables.CommitConflict(str(exc)) from None
    return committed.current_snapshot().snapshot_id


def read_warehouse(cfg: AppConfig, snapshot_id: int | None = None):
    """The warehouse as a Ray Dataset of the contract's typed columns, at a snapshot (default:
    the current one)."""
    import ray

    table = open_table(cfg, create=False)
    if table.current_snapshot() is None:
        raise empty(cfg)
    tables.version(table, snapshot_id)  # an unknown snapshot is a clear error, not Ray's
    schema = arrow_schema(cfg.dataset, with_meta=False)
    ds = ray.data.read_iceberg(
        table_identifier=WAREHOUSE,
        snapshot_id=snapshot_id,
        catalog_kwargs={"name": tables.NAMESPACE, **tables.catalog_properties(cfg.storage)},
    )
    # Iceberg has no int8 and Ray reads strings as large_string: back to the contract's types.
    return ds.map_batches(_to_schema, batch_format="pyarrow", fn_kwargs={"schema": schema})


def _to_schema(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    return batch.select(schema.names).cast(schema)


def read_table(cfg: AppConfig, snapshot_id: int | None = None) -> pa.Table:
    """The whole warehouse in this process, without Ray (small tables, checks and tests),
    in the contract's types and the keys' order."""
    table = open_table(cfg, create=False)
    tables.version(table, snapshot_id)
    rows = _to_schema(
        table.scan(snapshot_id=snapshot_id).to_arrow(), arrow_schema(cfg.dataset, with_meta=False)
    )
    return rows.sort_by([(cfg.dataset.entity, "ascending"), (cfg.dataset.timestamp, "ascending")])
