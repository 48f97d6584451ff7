"""Where a batch run writes: parquet parts streamed into a staging folder that is renamed into
place when the run is complete, so the output folder holds a whole run or nothing."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from app.data.schema import DataError
from app.files import fsync_dir

PART_FILE = "part-{:05d}.parquet"


class PartWriter:
    """Parquet files of at most `rows_per_file` rows in `folder`, appended to as tables arrive:
    memory holds one table at a time, however many rows pass."""

    def __init__(self, folder: Path, schema: pa.Schema, rows_per_file: int):
        self.folder, self.schema, self.rows_per_file = folder, schema, rows_per_file
        self.files: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0

    def write(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            if self._writer is None or self._in_file >= self.rows_per_file:
                self._open()
            take = min(table.num_rows - offset, self.rows_per_file - self._in_file)
            self._writer.write_table(table.slice(offset, take))
            self._in_file += take
            self.rows += take
            offset += take

    def _open(self) -> None:
        self._close_file()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / PART_FILE.format(len(self.files))
        self._writer = pq.ParquetWriter(path, self.schema)
        self.files.append(path)
        self._in_file = 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            _fsync(self.files[-1])
            self._writer = None

    def close(self) -> None:
        """Finish the last file; with no rows at all, one empty file keeps the schema readable."""
        if not self.files:
            self._open()
        self._close_file()


def check_output(output: str) -> Path:
    """The output folder: a local path that does not exist yet or is an empty folder."""
    if "://" in output:
        raise DataError(
            f"output {output}: give a local folder (the run is published by an atomic rename, "
            "which object stores do not have)"
        )
    path = Path(output).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise DataError(f"output {path} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()):
        raise DataError(f"output {path} exists and is not empty; give a new folder or empty this one")
    return path


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A hidden sibling folder to write the run into; renamed to `path` when the block ends
    without an error, removed otherwise (a failed or interrupted run leaves no output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        for folder, _, _ in os.walk(tmp):
            fsync_dir(folder)
        try:
            os.rename(tmp, path)  # replaces an empty folder; refuses one that filled meanwhile
        except OSError as exc:
            raise DataError(f"output {path} cannot be published ({exc.strerror})") from None
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
