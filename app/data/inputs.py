"""Where ETL's input is and how its rows are read: files behind a path, glob or URI, their
headers checked against the contract, JSON lines parsed with exact integer ids."""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from app.config import RAY_JOB_ENV, DatasetConfig
from app.data.schema import DataError, missing_columns
from app.errors import first_line

FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
}


def filesystem(source: str) -> tuple[pafs.FileSystem, str]:
    if "://" in source:
        return pafs.FileSystem.from_uri(source)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(source))


def resolve_inputs(source: str) -> list[str]:
    """Files behind a path, folder, glob or URI, in a stable order; hidden files skipped."""
    glob_at = min((i for i, ch in enumerate(source) if ch in "*?["), default=-1)
    base = source if glob_at < 0 else source[: source.rfind("/", 0, glob_at) + 1] or "."
    fs, base_path = filesystem(base)
    info = fs.get_file_info(base_path)
    if info.type == pafs.FileType.NotFound:
        hint = ""
        if (
            RAY_JOB_ENV in os.environ
            and "://" not in source
            and not os.path.isabs(os.path.expanduser(source))
        ):
            # A job runs in Ray's temporary copy of --working-dir, without the git-ignored data.
            hint = (
                " (in this Ray Job's temporary working directory, which holds no data/: point the job"
                ' at its data with --runtime-env-json \'{"env_vars": {"MLSYS_DATASET__SOURCE": "/path"}}\')'
            )
        raise DataError(f"input {source} does not exist{hint}")
    if info.type == pafs.FileType.File:
        paths = [base_path]
    else:
        selector = pafs.FileSelector(base_path, recursive=True)
        paths = sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)
    if glob_at >= 0:
        pattern = filesystem(source)[1]
        paths = [p for p in paths if fnmatch.fnmatch(p, pattern)]
    paths = [
        p for p in paths if not Path(p).name.startswith((".", "_")) and Path(p).suffix.lower() in FORMATS
    ]
    if not paths:
        raise DataError(f"input {source} holds no csv, parquet or jsonl files")
    prefix = source.split("://", 1)[0] + "://" if "://" in source else ""
    return [prefix + p if prefix and not p.startswith(prefix) else p for p in paths]


def file_format(path: str) -> str:
    """ "csv", "parquet" or "jsonl", from a path's or URI's suffix."""
    return FORMATS[Path(path.split("://")[-1]).suffix.lower()]


def header(path: str) -> list[str]:
    """Column names of one file, read cheaply; a corrupt or empty file is a DataError."""
    fs, p = filesystem(path)
    fmt = file_format(p)
    try:
        if fmt == "parquet":
            with fs.open_input_file(p) as fh:
                return pq.read_schema(fh).names
        with fs.open_input_stream(p) as fh:
            # utf-8-sig: a spreadsheet's export starts with a byte-order mark, which is not part
            # of the first column's name (pyarrow and pandas drop it too)
            head = fh.read(1 << 16).decode("utf-8-sig", errors="replace")
        first = next((ln for ln in head.splitlines() if ln.strip()), None)
        if first is None:
            raise DataError(f"{path}: the file is empty")
        if fmt == "csv":
            return next(csv.reader(io.StringIO(first)))
        return list(json.loads(first))
    except DataError:
        raise
    except Exception as exc:  # pyarrow / json raise many types for a corrupt file
        raise DataError(f"{path}: not a readable {fmt} file ({first_line(exc)})") from None


def check_inputs(paths: list[str], ds: DatasetConfig) -> None:
    for path in paths:
        missing = missing_columns(ds, header(path))
        if missing:
            raise DataError(f"{path}: missing required column(s) {missing}")


def json_lines_frame(lines: list[str], entity: str) -> pd.DataFrame:
    """JSON lines -> a raw frame whose integer ids are exact.

    Arrow's JSON reader is fast, but it makes an id column holding one fraction float64 (ids
    above 2**53 then collide) and refuses a column that mixes numbers and text ("inf").
    Such a batch is parsed by Python's json into object columns instead: exact, slower.
    """
    try:
        table = pajson.read_json(io.BytesIO("\n".join(lines).encode()))
        if entity not in table.column_names or not pa.types.is_floating(table.schema.field(entity).type):
            return table.to_pandas()
    except pa.ArrowInvalid:
        pass
    rows = []
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"a line is not valid JSON ({exc}): {line[:80]!r}") from None
        if not isinstance(row, dict):
            raise ValueError(f"a line is not a JSON object: {line[:80]!r}")
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)
