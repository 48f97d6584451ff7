"""Compaction and retention of the traffic log, as file operations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

from app.monitoring import compaction
from app.monitoring.traffic import PREDICTIONS, log_files, read_records, write_records
from tests.helpers import prediction_record

AT = datetime(2026, 1, 1, 10, 30, tzinfo=timezone.utc)
HOUR = "hour=2026-01-01T10"


def test_an_hour_merges_into_one_file_with_each_request_once_whatever_the_parts_schemas(tmp_path):
    write_records(tmp_path, PREDICTIONS, [prediction_record("a", at=AT, features={"country": None})])
    write_records(tmp_path, PREDICTIONS, [prediction_record("b", at=AT, features={"country": "DE"})])
    write_records(tmp_path, PREDICTIONS, [prediction_record("a", at=AT, features={"country": None})])  # again
    folder = tmp_path / PREDICTIONS / HOUR
    inputs = sorted(p.name for p in folder.iterdir())
    done = compaction.compact_hour(folder, inputs, "compact-x.parquet")
    assert (done.records, done.duplicates) == (2, 1)
    assert [p.name for p in folder.iterdir()] == ["compact-x.parquet"]
    table = pq.read_table(folder / "compact-x.parquet")
    assert sorted(table.column("request_id").to_pylist()) == ["a", "b"]
    assert table.column("country").to_pylist().count("DE") == 1  # null-typed column promoted


def test_compacting_again_after_a_crash_gives_the_same_records(tmp_path):
    for rid in "abc":
        write_records(tmp_path, PREDICTIONS, [prediction_record(rid, at=AT)])
    folder = tmp_path / PREDICTIONS / HOUR
    inputs = sorted(p.name for p in folder.iterdir())
    compaction.compact_hour(folder, inputs, "compact-1.parquet")
    for rid in "ab":  # as if the inputs had not been deleted yet, plus a late part
        write_records(tmp_path, PREDICTIONS, [prediction_record(rid, at=AT)])
    write_records(tmp_path, PREDICTIONS, [prediction_record("d", at=AT)])
    names = sorted(p.name for p in folder.iterdir())
    compaction.compact_hour(folder, [*names, "compact-never-written.parquet"], "compact-2.parquet")
    assert [p.name for p in folder.iterdir()] == ["compact-2.parquet"]
    assert sorted(read_records(tmp_path, PREDICTIONS)["request_id"]) == ["a", "b", "c", "d"]


def test_an_unreadable_part_is_moved_aside_not_deleted(tmp_path):
    write_records(tmp_path, PREDICTIONS, [prediction_record("a", at=AT)])
    (bad,) = map(Path, write_records(tmp_path, PREDICTIONS, [prediction_record("b", at=AT)]))
    bad.write_bytes(bad.read_bytes()[:40])
    folder = bad.parent
    done = compaction.compact_hour(folder, sorted(p.name for p in folder.iterdir()), "compact-x.parquet")
    assert done.unreadable == 1 and (folder / f"{bad.name}.unreadable").exists()
    assert list(log_files(tmp_path, PREDICTIONS)[HOUR]) == [str(folder / "compact-x.parquet")]


def test_only_closed_retained_hours_with_several_files_are_planned():
    files = {
        PREDICTIONS: {
            "hour=2026-01-01T08": {"p1", "p2"},  # closed
            "hour=2026-01-01T09": {"c1"},  # already one file
            "hour=2026-01-01T10": {"p1", "p2"},  # ended 10 minutes ago: still settling
            "hour=2025-11-01T10": {"p1", "p2"},  # past the retention: deleted, not compacted
        }
    }
    now = datetime(2026, 1, 1, 11, 10, tzinfo=timezone.utc)
    plans = compaction.plan(files, now=now, retention_days=30)
    assert [(p.hour, p.inputs) for p in plans] == [("hour=2026-01-01T08", ["p1", "p2"])]
    assert plans[0].output.startswith("compact-") and plans[0].output.endswith(".parquet")


def test_expired_hours_are_those_wholly_past_the_retention(tmp_path):
    for h in range(4):
        write_records(tmp_path, PREDICTIONS, [prediction_record(f"r{h}", at=AT + timedelta(hours=h))])
    now = AT + timedelta(days=1, hours=2)  # 2026-01-02T12:30: hours ending before 2026-01-01T12:30 go
    old = compaction.expired_hours(tmp_path, (PREDICTIONS,), now=now, retention_days=1)
    assert old == [(PREDICTIONS, "hour=2026-01-01T10"), (PREDICTIONS, "hour=2026-01-01T11")]
    compaction.delete(tmp_path, old)
    assert sorted(log_files(tmp_path, PREDICTIONS)) == ["hour=2026-01-01T12", "hour=2026-01-01T13"]
