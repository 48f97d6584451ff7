"""Durable, atomic file writes: a reader, a crash or a power cut never leaves half a file.

Each writer writes a temporary sibling with a name of its own (so concurrent writers never
share one), flushes it to disk, renames it over the target and flushes the directory entry.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write; on success it replaces `path` durably (parents created),
    on failure it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int | None = None) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            tmp.chmod(mode)
    return Path(path)


def atomic_write_parquet(path: str | Path, table) -> Path:
    """A pyarrow Table as one parquet file, atomically."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename (or a new entry) in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
