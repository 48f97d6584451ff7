"""Keeping the traffic log bounded: a closed hour's parts merged into one file, old hours deleted.

File operations on `<traffic>/<kind>/hour=…/`, run by the monitor right after it snapshots,
so every record they touch is already counted (see snapshot.py: the compaction's output is
named in that snapshot before it is written). Compaction is atomic and idempotent: the merged
file (request_id de-duplicated, first copy kept) is written whole before its inputs are
deleted, and merging again what a crash left behind gives the same records. A part that cannot
be read is moved to `<name>.unreadable` (out of the log, kept for inspection), never deleted.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from app.data.shared_files import as_files
from app.monitoring.traffic import Root, hour_start, is_hour, quarantine, read_part

log = logging.getLogger(__name__)
# An hour is compacted this long after its end: replicas ship records a few seconds late, and
# a part landing later still is merged by the next compaction.
SETTLE = timedelta(minutes=15)
HOUR = timedelta(hours=1)


@dataclass
class Plan:
    kind: str
    hour: str
    inputs: list[str]
    output: str


def output_name(now: datetime) -> str:
    return f"compact-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"


def expired(hour: str, *, now: datetime, retention_days: float) -> bool:
    """Whether all of the hour lies further back than the retention."""
    return hour_start(hour) + HOUR <= now - timedelta(days=retention_days)


def plan(files: dict[str, dict[str, set[str]]], *, now: datetime, retention_days: float) -> list[Plan]:
    """The closed, retained hours with more than one file, each with its output's name."""
    return [
        Plan(kind, hour, sorted(names), output_name(now))
        for kind, hours in files.items()
        for hour, names in sorted(hours.items())
        if len(names) > 1
        and hour_start(hour) + HOUR + SETTLE <= now
        and not expired(hour, now=now, retention_days=retention_days)
    ]


@dataclass
class Compacted:
    records: int = 0
    duplicates: int = 0
    unreadable: int = 0


def compact_hour(folder: Root, inputs: list[str], output: str) -> Compacted:
    """Merge `inputs` (names in `folder`) into `output`, then delete them."""
    folder = as_files(folder)
    tables, readable, result = [], [], Compacted()
    for name in inputs:
        if not folder.exists(folder.uri(name)):  # a planned output a crash never wrote
            continue
        table = read_part(folder, folder.uri(name))
        if table is None:
            quarantine(folder, folder.uri(name))
            result.unreadable += 1
        else:
            tables.append(table)
            readable.append(name)
    if tables:
        # Parts differ in schema where a column was all-null in one batch: promote, never fail.
        table = pa.concat_tables(tables, promote_options="permissive")
        first = ~table.column("request_id").to_pandas().duplicated(keep="first").to_numpy()
        result.records, result.duplicates = int(first.sum()), int(len(first) - first.sum())
        folder.write_parquet(folder.uri(output), table.filter(pa.array(first)))
        for name in readable:
            if name != output:
                folder.delete(folder.uri(name))
    return result


def expired_hours(
    root: Root, kinds: tuple[str, ...], *, now: datetime, retention_days: float
) -> list[tuple[str, str]]:
    """The (kind, hour) partitions past the retention (nothing deleted yet)."""
    files = as_files(root)
    return [
        (kind, hour)
        for kind in kinds
        for hour in sorted(files.names(files.uri(kind)))
        if is_hour(hour) and expired(hour, now=now, retention_days=retention_days)
    ]


def delete(root: Root, hours: list[tuple[str, str]]) -> None:
    files = as_files(root)
    for kind, hour in hours:
        files.remove(files.uri(kind, hour))
    if hours:
        log.info("traffic log: deleted %d hour partitions past the retention", len(hours))
