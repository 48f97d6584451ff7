"""The traffic log: one record per prediction and per feedback, as hourly parquet files.

Pure functions used by the monitor actor: writing a batch of records (each file whole: a
temporary file renamed into place on a disk, one object on an object store), reading them
back (a part that cannot be read is skipped with a warning, never a crash), and the labelled
traffic training reads. A record's `request_id` makes re-delivery idempotent (the counts,
counts.py, skip an id seen before), and a feedback's join to its prediction is what turns the
log into training data.

The log lives with the shared data files (`traffic_log`): under the storage root, or on the
object store, where the retrain job and a monitor restarted on another node read it. Files
are named by URI (`app.data.shared_files`); a local folder is accepted wherever a log is.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa

from app.config import StorageConfig
from app.data.shared_files import SharedFiles, as_files, shared_files

log = logging.getLogger(__name__)
PREDICTIONS, FEEDBACK = "predictions", "feedback"
HOUR_FORMAT = "hour=%Y-%m-%dT%H"  # sorts as time does
UNREADABLE = (OSError, ValueError, pa.ArrowException)  # a truncated or garbled file
Root = SharedFiles | Path  # a traffic log: on the shared files' store, or a local folder


def hour_key(at: datetime | pd.Timestamp) -> str:
    at = pd.Timestamp(at)
    return (at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")).strftime(HOUR_FORMAT)


def hour_start(key: str) -> datetime:
    return datetime.strptime(key, HOUR_FORMAT).replace(tzinfo=timezone.utc)


def is_hour(key: str) -> bool:
    """Whether a folder name is an hour partition (a stray copy beside them is ignored)."""
    try:
        hour_start(key)
    except ValueError:
        return False
    return True


def traffic_log(storage: StorageConfig) -> SharedFiles:
    return shared_files(storage).under(storage.traffic)


def file_name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def write_records(root: Root, kind: str, records: list[dict]) -> list[str]:
    """Append records under `<root>/<kind>/hour=.../`; each file appears whole or not at all."""
    files = as_files(root)
    frame = pd.DataFrame.from_records(records)
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
    written = []
    for hour, part in frame.groupby(frame["logged_at"].dt.strftime(HOUR_FORMAT)):
        name = f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        written.append(files.write_parquet(files.uri(kind, str(hour), name), table))
    return written


def log_files(root: Root, kind: str, *, since_hour: str | None = None) -> dict[str, list[str]]:
    """hour key -> that hour's files (parts and compacted files), both in order; no data read.
    One listing of the kind's folder (temporaries, hidden `.name.tmp-…`, are not listed)."""
    files = as_files(root)
    top = files.uri(kind)
    hours: dict[str, list[str]] = {}
    for uri in files.parquet_files(top):
        hour, _, name = uri.removeprefix(f"{top}/").partition("/")
        if "/" not in name and is_hour(hour) and (since_hour is None or hour >= since_hour):
            hours.setdefault(hour, []).append(uri)
    return dict(sorted(hours.items()))


def read_part(root: Root, uri: str, columns: list[str] | None = None) -> pa.Table | None:
    """One file of the log, or None (with a warning naming it) if it cannot be read whole.
    A file gone since it was listed (compacted, expired) is None without a warning."""
    files = as_files(root)
    try:
        table = files.read_table(uri)
    except FileNotFoundError:
        return None
    except UNREADABLE as exc:
        if store_failed(files, exc):
            raise
        log.warning("skipping unreadable traffic file %s: %s", uri, exc)
        return None
    keep = [c for c in columns if c in table.column_names] if columns else None
    return table.select(keep) if keep else table


def store_failed(files: SharedFiles, exc: Exception) -> bool:
    """Whether `exc` is the object store failing (a timeout, throttling, expired credentials),
    not the file: on a disk an I/O error means a damaged file, on an object store it is
    usually passing, and a good file must never be taken out of the log for it."""
    return files.remote and isinstance(exc, OSError) and not isinstance(exc, pa.ArrowInvalid)


def quarantine(root: Root, uri: str) -> None:
    """Move an unreadable file out of the log (`<name>.unreadable`), kept for inspection."""
    try:
        as_files(root).move(uri, f"{uri}.unreadable")
    except OSError as exc:
        log.warning("could not move %s aside: %s", uri, exc)


def read_records(
    root: Root, kind: str, columns: list[str] | None = None, *, since_hour: str | None = None
) -> pd.DataFrame:
    """Persisted records of a kind (from `since_hour` on), de-duplicated by request_id."""
    for _ in range(3):  # the monitor may compact an hour while it is read: read it again
        frames, vanished = [], False
        for files in log_files(root, kind, since_hour=since_hour).values():
            for f in files:
                table = read_part(root, f, columns)
                if table is not None:
                    frames.append(table.to_pandas())
                vanished = vanished or (table is None and not as_files(root).exists(f))
        if not vanished:
            break
    if not frames:
        return pd.DataFrame(columns=columns or [])
    frame = pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates("request_id", keep="first").reset_index(drop=True)


def labelled_traffic(
    root: Root, label: str = "label", *, since: str | None = None, until: str | None = None
) -> pd.DataFrame:
    """Served predictions (logged after `since`, if given) joined to their feedback: features,
    score, the observed outcome and when it arrived (`labelled_at`), one row per request (shadow
    copies excluded) - training data for the next run. Only the hours from `since` on are read.
    With `until`, point in time: only predictions and outcomes logged at or before it count."""
    start, end = _utc(since), _utc(until)
    # A feedback is logged after its prediction; an hour's margin covers the clocks' skew.
    preds = read_records(root, PREDICTIONS, since_hour=None if start is None else hour_key(start))
    feedback = read_records(
        root, FEEDBACK, since_hour=None if start is None else hour_key(start - timedelta(hours=1))
    )
    if preds.empty or feedback.empty:
        return pd.DataFrame()
    served = preds[(preds["status"] == "ok") & ~preds["shadow"].astype(bool)]
    served_at = pd.to_datetime(served["logged_at"], utc=True)
    if start is not None:
        served = served[served_at > start]
    if end is not None:
        served = served[served_at.loc[served.index] <= end]
    outcomes = feedback[["request_id", "label", "logged_at"]].rename(
        columns={"label": label, "logged_at": "labelled_at"}
    )
    outcomes["labelled_at"] = pd.to_datetime(outcomes["labelled_at"], utc=True)
    if end is not None:  # an outcome that arrived after the cutoff was not known then
        outcomes = outcomes[outcomes["labelled_at"] <= end]
    return served.merge(outcomes, on="request_id", how="inner", validate="1:1")


def _utc(at: str | pd.Timestamp | None) -> pd.Timestamp | None:
    if at is None:
        return None
    at = pd.Timestamp(at)
    return at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
