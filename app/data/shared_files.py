"""The data files that every node reads and writes besides the tables: the feature table
(Feast's offline source), the monitor's traffic log, training checkpoints, ETL's staging and
quarantine, the point-in-time join's buckets.

They live beside the shared state (`storage.state`): under `storage.root` by default, or
under the same `s3://bucket/prefix` on an object store, reached with the endpoint and
credentials of `storage.catalog` (else the usual AWS variables). Files are named by URI (a
path, or `s3://…`), which Ray tasks on any node open as they are. Each
file is written whole: an atomic rename on a filesystem, one object on S3 (a single PUT or a
completed multipart upload), so a reader never sees half a file, even from a killed writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from app.config import StorageConfig
from app.data import tables
from app.data.schema import DataError
from app.errors import cause_line
from app.files import atomic_write_bytes, atomic_write_parquet

T, R = TypeVar("T"), TypeVar("R")
REQUESTS_AT_ONCE = 16


@dataclass(frozen=True)
class SharedFiles:
    location: str  # a folder, or s3://bucket/prefix
    properties: tuple[tuple[str, str], ...] = ()  # the catalog's, for the object store's endpoint

    @property
    def remote(self) -> bool:
        return "://" in self.location

    def uri(self, *parts: str) -> str:
        return "/".join([self.location, *parts])

    @cached_property
    def fs(self) -> pafs.FileSystem:
        return tables.file_system(dict(self.properties), [self.location])[0]

    def path(self, uri: str) -> str:
        """`uri` as a path in `fs` (what pyarrow and Ray Data take beside `filesystem=`)."""
        return uri.removeprefix("s3://")

    def parquet_files(self, uri: str) -> list[str]:
        """The parquet files under `uri` (any depth; hidden names such as a writer's temporary
        `.x.tmp-…` skipped), sorted, as URIs."""
        selector = pafs.FileSelector(self.path(uri), recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise self._unusable(exc) from exc
        prefix = "s3://" if self.remote else ""
        names = (i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
        return sorted(prefix + p for p in names if p.rsplit("/", 1)[-1][:1] not in "._")

    def under(self, *parts: str) -> SharedFiles:
        """The folder `parts` as shared files of its own (the traffic log, one hour of it),
        through the same client (an S3 client takes tens of milliseconds to make)."""
        folder = SharedFiles(self.uri(*parts), self.properties)
        folder.__dict__["fs"] = self.fs  # `fs` is a cached property: given, not made again
        return folder

    def partitions(self, uri: str, column: str) -> dict[str, list[str]]:
        """The parquet files a writer partitioned by `column` under `uri`, by the column's value
        (Hive folders `column=value`)."""
        out: dict[str, list[str]] = {}
        for f in self.parquet_files(uri):
            folder = f.rsplit("/", 2)[-2]
            if folder.startswith(f"{column}="):
                out.setdefault(folder.split("=", 1)[1], []).append(f)
        return out

    def names(self, uri: str) -> list[str]:
        """The names of the entries directly under `uri` (none when it is not there)."""
        selector = pafs.FileSelector(self.path(uri), allow_not_found=True)
        return [i.base_name for i in self.fs.get_file_info(selector)]

    def ray_storage(self, key: str) -> dict:
        """Ray Train's and Tune's `storage_path` and `storage_filesystem` for the folder `key`:
        checkpoints every worker writes and a restarted one reads, on whichever node."""
        return {
            "storage_path": self.path(self.uri(key)),
            "storage_filesystem": self.fs if self.remote else None,
        }

    def exists(self, uri: str) -> bool:
        return self.fs.get_file_info(self.path(uri)).type == pafs.FileType.File

    def parquet(self, uri: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.path(uri), filesystem=self.fs)

    def read_table(self, uris: str | list[str], **kwargs) -> pa.Table:
        paths = self.path(uris) if isinstance(uris, str) else [self.path(u) for u in uris]
        return pq.read_table(paths, filesystem=self.fs, **kwargs)

    def read_bytes(self, uri: str) -> bytes | None:
        """A file's bytes, or None when it is not there."""
        try:
            with self.fs.open_input_stream(self.path(uri)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_bytes(self, uri: str, data: bytes) -> str:
        """One whole file, as `write_parquet`."""
        if not self.remote:
            return str(atomic_write_bytes(uri, data))
        with self.fs.open_output_stream(self.path(uri)) as f:
            f.write(data)  # one call: the object appears when the stream closes
        return uri

    def write_parquet(self, uri: str, table: pa.Table) -> str:
        """One whole file: renamed into place on a filesystem, one object on S3."""
        if not self.remote:
            return str(atomic_write_parquet(uri, table))
        # Serialized first, uploaded once it is whole: a writer failing half-way through the
        # table must not close (and so publish) a shorter file, as pyarrow's writer would.
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return self.write_bytes(uri, sink.getvalue().to_pybytes())

    def move(self, source: str, dest: str) -> None:
        if not self.remote:
            self.fs.create_dir(self.path(dest).rsplit("/", 1)[0], recursive=True)
        self.fs.move(self.path(source), self.path(dest))

    def delete(self, uri: str) -> None:
        """A file; nothing when it is not there."""
        with suppress(FileNotFoundError):
            self.fs.delete_file(self.path(uri))

    def remove(self, uri: str) -> None:
        """A folder and everything under it; nothing when it is not there."""
        with suppress(FileNotFoundError):
            self.fs.delete_dir(self.path(uri))

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`fn` over `items`, in order, many at once on an object store: each call is a
        request that mostly waits on the network (56 footers read one after another took
        seconds on a local S3 server)."""
        items = list(items)
        if not self.remote or len(items) < 2:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(min(REQUESTS_AT_ONCE, len(items))) as pool:
            return list(pool.map(fn, items))

    def footers(self, uris: list[str]) -> list[pq.FileMetaData]:
        """The parquet footers of `uris` (row counts, sizes, statistics), no data read."""
        return self.map(lambda uri: self.parquet(uri).metadata, uris)

    def check(self) -> SharedFiles:
        """These files, once their store answers: an unreachable endpoint, refused credentials
        or a missing bucket is one DataError naming the location, before anything is written."""
        if self.remote:
            bucket = self.path(self.location).split("/", 1)[0]
            try:
                if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                    raise FileNotFoundError(f"no bucket {bucket!r}")
                self.names(self.location)  # a listing: the credentials are checked too
            except OSError as exc:
                raise self._unusable(exc) from exc
        return self

    def _unusable(self, exc: Exception) -> DataError:
        return DataError(f"the shared files' store {self.location} is not usable: {cause_line(exc)}")


def as_files(root: SharedFiles | str | Path) -> SharedFiles:
    """`root` as shared files: a local folder (a tool, a test) is one too."""
    return root if isinstance(root, SharedFiles) else SharedFiles(str(root))


def shared_files(storage: StorageConfig) -> SharedFiles:
    """Where `storage` keeps its shared data files."""
    if storage.state:
        return SharedFiles(storage.state, tuple(sorted(tables.catalog_properties(storage).items())))
    return SharedFiles(storage.root)
