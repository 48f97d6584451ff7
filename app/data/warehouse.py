"""The warehouse: an Apache Iceberg table, written and read through pyiceberg and Ray Data.

Why Iceberg (README, Storage): every ETL run is one atomic commit to a catalog, so a reader
sees the table before the run or after it, never half of it, even when the writer is killed;
concurrent writers are serialised by the catalog's compare-and-swap instead of a lock on a
shared disk; every commit is a numbered snapshot that a training set can be read back at;
and DuckDB, Spark or Trino read the table without mlsys. Ray Data reads it
(`read_iceberg(snapshot_id=...)`).

The catalog is sqlite under the storage root unless `storage.catalog` names another: a SQL
database every node reaches, or an Iceberg REST catalog in front of an object store (the
tests run SeaweedFS's). Rows are partitioned by the day
of their event timestamp (UTC), as the feature table is. The table's data files are written
by mlsys's own merge tasks (one file per day and run) and added in one commit by the driver
(`commit_files`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa

from app.config import AppConfig, StorageConfig
from app.data.schema import DataError, arrow_schema
from app.errors import cause_line

log = logging.getLogger(__name__)
NAMESPACE = "mlsys"
WAREHOUSE = f"{NAMESPACE}.warehouse"
DAY = "day"
# The table layout mlsys writes. A table whose `mlsys.layout` is newer was written by a later
# mlsys with a layout this one may misread: it is refused, never read.
LAYOUT_KEY, LAYOUT = "mlsys.layout", 1
_EPOCH = dt.date(1970, 1, 1)


class CommitConflict(RuntimeError):
    """Another writer committed to the table since this one read it; nothing was committed."""


@dataclass(frozen=True)
class TableVersion:
    """One snapshot of a table: what lineage records and `--as-of` reads back."""

    snapshot_id: int | None  # None: the table has no commit yet
    rows: int


def catalog_properties(storage: StorageConfig) -> dict[str, str]:
    """pyiceberg's catalog properties (`storage.catalog`, or sqlite under the storage root),
    which Ray's `read_iceberg` takes as they are. An object store's endpoint may also come from
    AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, which pyarrow's S3 client ignores on its own."""
    if not storage.catalog:
        return {
            "type": "sql",
            "uri": f"sqlite:///{storage.path('catalog.db')}",
            "warehouse": storage.path().as_uri(),
        }
    properties = dict(storage.catalog)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "s3.endpoint" not in properties:
        properties["s3.endpoint"] = endpoint
    return properties


@lru_cache(maxsize=8)
def _catalog(frozen: tuple[tuple[str, str], ...]):
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog(NAMESPACE, **dict(frozen))
    catalog.create_namespace_if_not_exists(NAMESPACE)
    return catalog


def catalog(storage: StorageConfig):
    """The catalog; an unreachable one, or one that refuses the credentials, is a DataError
    naming it."""
    properties = catalog_properties(storage)
    if not storage.catalog:
        storage.path().mkdir(parents=True, exist_ok=True)  # sqlite's file goes under the root
    try:
        return _catalog(tuple(sorted(properties.items())))
    except Exception as exc:  # pyiceberg raises per transport (HTTP, SQL, S3): say which catalog
        where = properties.get("uri", "?")
        raise DataError(f"the table catalog {where} is not usable: {cause_line(exc)}") from None


def file_system(properties: dict[str, str], uris: list[str]):
    """pyarrow's filesystem for a table's files (one store; the catalog's endpoint and
    credentials) and the files' paths in it."""
    if all(uri.startswith(("/", "file://")) for uri in uris):  # local: no pyiceberg import in tasks
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), [uri.removeprefix("file://") for uri in uris]
    from pyiceberg.io.pyarrow import PyArrowFileIO

    parsed = [PyArrowFileIO.parse_location(uri) for uri in uris]
    scheme, netloc, _ = parsed[0]
    return PyArrowFileIO(properties).fs_by_scheme(scheme, netloc), [path for _, _, path in parsed]


def open_table(cfg: AppConfig, *, create: bool = True):
    """The warehouse table, created on first use (schema from the data contract, partitioned by
    day, the writer's own commit retries off: a merge must be redone against what another writer
    committed, never blindly re-applied)."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.transforms import DayTransform

    cat = catalog(cfg.storage)
    try:
        return _checked(cat.load_table(WAREHOUSE))
    except NoSuchTableError:
        if not create:
            raise DataError(
                f"the warehouse {cfg.storage.warehouse} is empty: run `mlsys etl` first"
            ) from None
    properties = {"commit.retry.num-retries": "0", LAYOUT_KEY: str(LAYOUT), "format-version": "2"}
    # Under the storage root with the default catalog; where the catalog puts it with another.
    location = None if cfg.storage.catalog else cfg.storage.warehouse.as_uri()
    try:
        with (
            cat.create_table_transaction(
                WAREHOUSE,
                schema=arrow_schema(cfg.dataset, with_meta=False),
                location=location,
                properties=properties,
            ) as tx,
            tx.update_spec() as spec,
        ):
            spec.add_field(cfg.dataset.timestamp, DayTransform(), DAY)
    except TableAlreadyExistsError:  # another writer created it first
        pass
    return _checked(cat.load_table(WAREHOUSE))


def _checked(table):
    layout = int(table.properties.get(LAYOUT_KEY, LAYOUT))
    if layout > LAYOUT:
        raise DataError(
            f"the table {table.name()} at {table.location()} has mlsys layout {layout}; this mlsys "
            f"reads layout {LAYOUT}: upgrade mlsys to read it"
        )
    return table


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


def version(table, snapshot_id: int | None = None) -> TableVersion:
    snapshot = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else table.current_snapshot()
    if snapshot is None:
        if snapshot_id is not None:
            raise DataError(f"the table {table.name()} has no snapshot {snapshot_id}")
        return TableVersion(None, 0)
    return TableVersion(snapshot.snapshot_id, int(snapshot.summary["total-records"]))


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
        raise CommitConflict(str(exc)) from None
    return committed.current_snapshot().snapshot_id


def read_warehouse(cfg: AppConfig, snapshot_id: int | None = None):
    """The warehouse as a Ray Dataset of the contract's typed columns, at a snapshot (default:
    the current one)."""
    import ray

    table = open_table(cfg, create=False)
    if table.current_snapshot() is None:
        raise DataError(f"the warehouse {cfg.storage.warehouse} is empty: run `mlsys etl` first")
    version(table, snapshot_id)  # an unknown snapshot is a clear error, not Ray's
    schema = arrow_schema(cfg.dataset, with_meta=False)
    ds = ray.data.read_iceberg(
        table_identifier=WAREHOUSE,
        snapshot_id=snapshot_id,
        catalog_kwargs={"name": NAMESPACE, **catalog_properties(cfg.storage)},
    )
    # Iceberg has no int8 and Ray reads strings as large_string: back to the contract's types.
    return ds.map_batches(_to_schema, batch_format="pyarrow", fn_kwargs={"schema": schema})


def _to_schema(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    return batch.select(schema.names).cast(schema)


def read_table(cfg: AppConfig, snapshot_id: int | None = None) -> pa.Table:
    """The whole warehouse in this process, without Ray (small tables, checks and tests),
    in the contract's types and the keys' order."""
    table = open_table(cfg, create=False)
    version(table, snapshot_id)
    rows = _to_schema(
        table.scan(snapshot_id=snapshot_id).to_arrow(), arrow_schema(cfg.dataset, with_meta=False)
    )
    return rows.sort_by([(cfg.dataset.entity, "ascending"), (cfg.dataset.timestamp, "ascending")])
