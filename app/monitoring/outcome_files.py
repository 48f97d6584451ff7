"""Outcome files: labels a system of record exports in bulk (`mlsys outcomes load`), read and
checked row by row, without Ray.

A row names its prediction by `request_id`, or by the dataset's entity column and a timestamp
(the event's time: outcome_join.py finds the entity's latest prediction at or before it), and
carries the label: 0 or 1, or one of `dataset.label_map`'s raw values. Each row that cannot be
used gets the first reason it fails, in `_reason` (ETL's quarantine column); nothing is dropped.
A file that cannot be read at all, or lacks the columns to name a prediction and its label, is
one `DataError` line.
"""

from __future__ import annotations

import io
import os
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from app.config import DatasetConfig
from app.data.inputs import file_format, json_lines_frame, resolve_inputs
from app.data.schema import NULL_TOKENS, REASON, DataError, coerce_int_ids
from app.errors import first_line

REQUEST_ID = "request_id"
LABEL = "label"  # the label's column when the file lacks the dataset's own label column
FILE, ROW = "_file", "_row"  # where a row came from: its file, and its line among the file's rows
KEY, EVENT_AT = "_key", "_event_at"  # an entity row's assignment key and event time
# The request ids /feedback takes (serving/schemas.py's Feedback; a test pins them equal).
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NOT_A_REQUEST_ID = "request_id: not a request id"
MISSING_REQUEST_ID = "request_id: missing"


# ---------------------------------------------------------------- reading


def read_outcomes(source: str, ds: DatasetConfig) -> tuple[pd.DataFrame, int]:
    """Every row of the csv, parquet or jsonl files behind `source` (a file, folder, glob or
    URI), raw values as read, with its FILE and ROW (columns renamed by `dataset.rename`), and
    how many files there were."""
    frames, paths = [], resolve_inputs(source)
    for path in paths:
        frame = _read(path, ds).rename(columns=ds.rename)
        check_columns(path, list(frame.columns), ds)
        # Integer columns as objects: one file's ids next to another's gaps must not go through float64.
        ints = [c for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])]
        frame = frame.astype(dict.fromkeys(ints, object)).reset_index(drop=True)
        frame[FILE], frame[ROW] = path, np.arange(1, len(frame) + 1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), len(paths)


def _read(path: str, ds: DatasetConfig) -> pd.DataFrame:
    fmt = file_format(path)
    if "://" in path:
        fs, p = pafs.FileSystem.from_uri(path)
    else:
        fs, p = pafs.LocalFileSystem(), os.path.abspath(path)
    try:
        if fmt == "parquet":
            with fs.open_input_file(p) as fh:
                return pq.read_table(fh).to_pandas()
        with fs.open_input_stream(p) as fh:
            data = fh.read()
    except Exception as exc:  # pyarrow raises many types for a corrupt or unreachable file
        raise DataError(f"{path}: not a readable {fmt} file ({first_line(exc)})") from None
    if not data.strip():
        raise DataError(f"{path}: the file is empty")
    try:
        if fmt == "csv":  # every value as its text: ids stay exact, junk is a row's reason
            return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        entity = {clean: raw for raw, clean in ds.rename.items()}.get(ds.entity, ds.entity)
        return json_lines_frame(data.decode("utf-8").splitlines(), entity)
    except Exception as exc:  # a csv parser error, a line that is not JSON, bytes that are not UTF-8
        raise DataError(f"{path}: not a readable {fmt} file ({first_line(exc)})") from None


def label_column(columns: list[str], ds: DatasetConfig) -> str | None:
    """The label's column: the dataset's, else `label` (what /feedback calls it)."""
    return next((c for c in (ds.label, LABEL) if c in columns), None)


def check_columns(path: str, columns: list[str], ds: DatasetConfig) -> None:
    """A file must hold the label and either `request_id` or the entity and the timestamp."""
    missing = [] if label_column(columns, ds) else [ds.label]
    by_entity = [c for c in (ds.entity, ds.timestamp) if c not in columns]
    if REQUEST_ID not in columns and by_entity:
        missing.append(f"{REQUEST_ID} (or {' and '.join(by_entity)})")
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")


# ---------------------------------------------------------------- checking rows


def check_rows(frame: pd.DataFrame, ds: DatasetConfig, *, now: datetime) -> pd.DataFrame:
    """Per row the prediction it names (REQUEST_ID, or KEY and EVENT_AT), its LABEL (0/1) and
    the first reason it is refused (REASON; None while it is good), on `frame`'s index."""
    n = len(frame)
    out = pd.DataFrame(index=frame.index)
    reasons = pd.Series([None] * n, index=frame.index, dtype=object)
    rid = _text(frame[REQUEST_ID]) if REQUEST_ID in frame else pd.Series([None] * n, frame.index, object)
    by_id = rid.notna()
    reasons = refuse(
        reasons, by_id & ~rid.fillna("").str.fullmatch(REQUEST_ID_PATTERN.pattern), NOT_A_REQUEST_ID
    )
    out[REQUEST_ID] = rid.where(by_id, None).astype(object)
    if ds.entity in frame and ds.timestamp in frame:
        key, why = _keys(frame[ds.entity], ds)
        reasons = refuse(reasons, ~by_id & why.notna(), ds.entity + ": " + why.fillna(""))
        at = _times(frame[ds.timestamp])
        reasons = refuse(reasons, ~by_id & at.isna(), f"{ds.timestamp}: missing or unparseable timestamp")
        reasons = refuse(
            reasons, ~by_id & (at > pd.Timestamp(now)), f"{ds.timestamp}: later than the load time"
        )
        out[KEY], out[EVENT_AT] = key.where(~by_id & why.isna(), None), at
    else:
        reasons = refuse(reasons, ~by_id, MISSING_REQUEST_ID)
        out[KEY], out[EVENT_AT] = None, pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    column = label_column(list(frame.columns), ds)
    label = _labels(frame[column], ds.label_map)
    reasons = refuse(reasons, label.isna(), f"{column}: missing or not a label value")
    out[LABEL] = label.fillna(0).astype("int8")
    out[REASON] = reasons
    return out


def refuse(reasons: pd.Series, bad: pd.Series, why: str | pd.Series) -> pd.Series:
    """`reasons` with each newly refused row's reason (a row keeps the first one it got)."""
    fresh = bad.fillna(False).astype(bool) & reasons.isna()
    reasons = reasons.copy()
    reasons[fresh] = why[fresh] if isinstance(why, pd.Series) else why
    return reasons


def _blank(col: pd.Series) -> pd.Series:
    text = col.astype("string").str.strip().str.lower()
    return col.isna() | text.isna() | text.isin(NULL_TOKENS).fillna(True)


def _text(col: pd.Series) -> pd.Series:
    """Stripped text, None where blank."""
    return col.astype("string").str.strip().astype(object).where(~_blank(col), None)


def _keys(col: pd.Series, ds: DatasetConfig) -> tuple[pd.Series, pd.Series]:
    """Each entity id as the traffic log's assignment key (the id's text), and why one is refused."""
    if ds.entity_type == "int64":
        ids, why = coerce_int_ids(col)
        return ids.astype(str).astype(object), why
    text = _text(col)
    return text, pd.Series(np.where(text.isna(), "missing id", None), index=col.index, dtype=object)


def _times(col: pd.Series) -> pd.Series:
    """Event times in UTC (a time without a zone is UTC), NaT where missing or unparseable."""
    if pd.api.types.is_datetime64_any_dtype(col):
        at = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
    else:
        text = col.astype("string").where(~_blank(col))
        at = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        retry = at.isna() & text.notna()
        if retry.any():
            at[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    return at.astype("datetime64[us, UTC]")


def _labels(col: pd.Series, label_map: dict[str, int] | None) -> pd.Series:
    """0 or 1 (as numbers or their text), or a raw value of `label_map`; NaN otherwise."""
    if pd.api.types.is_bool_dtype(col):
        return pd.Series(np.nan, index=col.index)  # True is not a label value, as in ETL
    num = pd.to_numeric(col, errors="coerce").astype("float64")
    num = num.where(num.isin([0.0, 1.0]))
    if label_map:
        mapped = col.astype("string").str.strip().map(label_map).astype("float64")
        num = num.fillna(mapped)
    return num
