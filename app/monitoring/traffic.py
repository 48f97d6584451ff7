"""The traffic log: one record per prediction and per feedback, as hourly parquet files.

Pure functions used by the monitor actor: writing a batch of records (atomically: a
temporary file renamed into place), reading them back (a part that cannot be read is skipped
with a warning, never a crash), and the labelled traffic training reads. A record's
`request_id` makes re-delivery idempotent (the counts, counts.py, skip an id seen before), and
a feedback's join to its prediction is what turns the log into training data.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.files import atomic_write_parquet

log = logging.getLogger(__name__)
PREDICTIONS, FEEDBACK = "predictions", "feedback"
HOUR_FORMAT = "hour=%Y-%m-%dT%H"  # sorts as time does
UNREADABLE = (OSError, ValueError, pa.ArrowException)  # a truncated or garbled file


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


def write_records(root: Path, kind: str, records: list[dict]) -> list[Path]:
    """Append records under `<root>/<kind>/hour=.../`; each file appears whole or not at all."""
    frame = pd.DataFrame.from_records(records)
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
    written = []
    for hour, part in frame.groupby(frame["logged_at"].dt.strftime(HOUR_FORMAT)):
        name = f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        written.append(atomic_write_parquet(root / kind / str(hour) / name, table))
    return written


def log_files(root: Path, kind: str, *, since_hour: str | None = None) -> dict[str, list[Path]]:
    """hour key -> that hour's files (parts and compacted files), both in order; no data read."""
    hours: dict[str, list[Path]] = {}
    for folder in sorted((root / kind).glob("hour=*")):
        if is_hour(folder.name) and (since_hour is None or folder.name >= since_hour):
            files = sorted(folder.glob("*.parquet"))  # temporaries are hidden `.name.tmp-…`
            if files:
                hours[folder.name] = files
    return hours


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """One file of the log, or None (with a warning naming it) if it cannot be read whole.
    A file gone since it was listed (compacted, expired) is None without a warning."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        return None
    except UNREADABLE as exc:
        log.warning("skipping unreadable traffic file %s: %s", path, exc)
        return None
    keep = [c for c in columns if c in table.column_names] if columns else None
    return table.select(keep) if keep else table


def quarantine(path: Path) -> None:
    """Move an unreadable file out of the log (`<name>.unreadable`), kept for inspection."""
    try:
        path.rename(path.with_name(f"{path.name}.unreadable"))
    except OSError as exc:
        log.warning("could not move %s aside: %s", path, exc)


def read_records(
    root: Path, kind: str, columns: list[str] | None = None, *, since_hour: str | None = None
) -> pd.DataFrame:
    """Persisted records of a kind (from `since_hour` on), de-duplicated by request_id."""
    for _ in range(3):  # the monitor may compact an hour while it is read: read it again
        frames, vanished = [], False
        for files in log_files(root, kind, since_hour=since_hour).values():
            for f in files:
                table = read_part(f, columns)
                if table is not None:
                    frames.append(table.to_pandas())
                vanished = vanished or (table is None and not f.exists())
        if not vanished:
            break
    if not frames:
        return pd.DataFrame(columns=columns or [])
    frame = pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates("request_id", keep="first").reset_index(drop=True)


def labelled_traffic(
    root: Path, label: str = "label", *, since: str | None = None, until: str | None = None
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
