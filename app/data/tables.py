"""mlsys's Apache Iceberg tables (the warehouse, the production table): their catalog, their
files, their snapshots.

Why Iceberg (README, Storage): a write is one atomic commit to a catalog, so a reader sees a
table before it or after it, never half of it, even when the writer is killed; concurrent
writers are serialised by the catalog's compare-and-swap instead of a lock on a shared disk;
every commit is a numbered snapshot that can be read back; and DuckDB, Spark or Trino read
the tables without mlsys.

The catalog is sqlite under the storage root, the tables beside it, unless `storage.catalog`
names another: a SQL database every node reaches, or an Iceberg REST catalog in front of an
object store (the tests run SeaweedFS's), which then decides where the tables live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from app.config import StorageConfig
from app.data.schema import DataError
from app.errors import cause_line

NAMESPACE = "mlsys"
# The table layout mlsys writes. A table whose `mlsys.layout` is newer was written by a later
# mlsys with a layout this one may misread: it is refused, never read.
LAYOUT_KEY, LAYOUT = "mlsys.layout", 1


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


def open_table(storage: StorageConfig, name: str):
    """The table `mlsys.<name>`, or None when it does not exist yet."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return _checked(catalog(storage).load_table(f"{NAMESPACE}.{name}"))
    except NoSuchTableError:
        return None


def create_table(
    storage: StorageConfig, name: str, schema: pa.Schema, *, local: Path, partition=None, **properties: str
):
    """Create `mlsys.<name>` (at `local` with the default catalog; where another catalog puts
    it), partitioned by `partition` = (source column, transform, name); a table another writer
    created meanwhile is returned as it is."""
    from pyiceberg.exceptions import TableAlreadyExistsError

    cat = catalog(storage)
    identifier = f"{NAMESPACE}.{name}"
    location = None if storage.catalog else local.as_uri()
    props = {LAYOUT_KEY: str(LAYOUT), "format-version": "2", **properties}
    try:
        with cat.create_table_transaction(
            identifier, schema=schema, location=location, properties=props
        ) as tx:
            if partition is not None:
                with tx.update_spec() as spec:
                    spec.add_field(*partition)
    except TableAlreadyExistsError:
        pass
    return _checked(cat.load_table(identifier))


def _checked(table):
    layout = int(table.properties.get(LAYOUT_KEY, LAYOUT))
    if layout > LAYOUT:
        raise DataError(
            f"the table {table.name()} at {table.location()} has mlsys layout {layout}; this mlsys "
            f"reads layout {LAYOUT}: upgrade mlsys to read it"
        )
    return table


def version(table, snapshot_id: int | None = None) -> TableVersion:
    snapshot = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else table.current_snapshot()
    if snapshot is None:
        if snapshot_id is not None:
            raise DataError(f"the table {table.name()} has no snapshot {snapshot_id}")
        return TableVersion(None, 0)
    return TableVersion(snapshot.snapshot_id, int(snapshot.summary["total-records"]))
