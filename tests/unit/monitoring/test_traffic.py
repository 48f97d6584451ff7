"""The traffic log: hourly parquet parts written atomically, read back de-duplicated."""

from __future__ import annotations

import concurrent.futures
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.monitoring.shipper import TrafficShipper
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, read_records, write_records
from tests.doubles import traffic_record


def record(rid, variant="champion", label=1, status="ok", at=None, shadow=False):
    """The traffic log's row of a replica's record."""
    row = traffic_record(
        rid,
        features={"age": 30.0},
        at=at,
        variant=variant,
        score=0.7,
        label=label,
        status=status,
        shadow=shadow,
    )
    return row.row()


def test_records_land_in_hour_partitions_and_read_back_deduplicated(tmp_path):
    now = datetime(2026, 1, 1, 10, 30, tzinfo=timezone.utc)
    write_records(tmp_path, PREDICTIONS, [record("a", at=now), record("b", at=now + timedelta(hours=1))])
    write_records(tmp_path, PREDICTIONS, [record("a", at=now)])  # a re-delivery
    hours = sorted(p.name for p in (tmp_path / PREDICTIONS).iterdir())
    assert hours == ["hour=2026-01-01T10", "hour=2026-01-01T11"]
    assert not list(tmp_path.rglob(".*tmp"))  # no half-written files left
    back = read_records(tmp_path, PREDICTIONS)
    assert sorted(back["request_id"]) == ["a", "b"]


def test_shipper_keeps_what_it_could_not_send_and_counts_what_did_not_fit():
    sent, now, down = [], [0.0], [True]

    def send(batch, dropped):
        sent.append((len(batch), dropped))
        if down[0]:
            raise ConnectionError("monitor down")
        return concurrent.futures.Future()  # an answer still to come

    shipper = TrafficShipper(send, capacity=5, batch_size=10, retry_after_s=1.0, clock=lambda: now[0])
    for i in range(8):
        shipper.add({"request_id": str(i)})
    assert shipper.dropped_total == 3  # over capacity: counted, not blocking
    shipper.pump()
    assert sent == [(5, 3)] and len(shipper.buffer) == 5, "kept for a resend, in order"
    shipper.pump()
    assert len(sent) == 1, "no resend before retry_after_s"
    now[0], down[0] = 1.5, False
    assert shipper.pump() == 5
    assert sent[-1] == (5, 3), "the same records, with the drop count they carried"
    assert [r["request_id"] for r in shipper.in_flight[0].records] == ["0", "1", "2", "3", "4"]
    assert shipper.dropped_total == 3 and shipper.dropped == 0 and not shipper.buffer


def test_shipper_resends_a_batch_the_monitor_lost_and_drops_one_it_refused():
    from ray.exceptions import ActorUnavailableError, RayTaskError

    answers = []

    def send(batch, dropped):
        answers.append((concurrent.futures.Future(), [r["request_id"] for r in batch], dropped))
        return answers[-1][0]

    shipper = TrafficShipper(send, batch_size=2, retry_after_s=0.0)
    shipper.dropped = shipper.dropped_total = 4  # a full buffer earlier
    for i in range(4):
        shipper.add({"request_id": str(i)})
    shipper.pump()
    assert [(ids, d) for _, ids, d in answers] == [(["0", "1"], 4), (["2", "3"], 0)]
    answers[0][0].set_exception(ActorUnavailableError("restarting", b"\x00" * 16))  # lost on the way
    answers[1][0].set_exception(RayTaskError("ingest", "traceback", ValueError("bad record")))
    shipper.pump()
    # Resent with the drop count it carried, plus the refused batch's two records.
    assert (answers[2][1], answers[2][2]) == (["0", "1"], 4 + 2)
    assert shipper.dropped_total == 4 + 2 and shipper.dropped == 0
    answers[2][0].set_result(2)
    shipper.pump()
    assert not shipper.in_flight and not shipper.buffer


def test_feedback_joins_the_log_into_training_rows(tmp_path):
    from app.monitoring.traffic import labelled_traffic

    now = datetime.now(timezone.utc)
    shadow = record("a", variant="challenger", shadow=True)
    write_records(tmp_path, PREDICTIONS, [record("a"), record("b"), shadow])
    write_records(
        tmp_path,
        FEEDBACK,
        [
            {"request_id": "a", "label": 0, "logged_at": now},
            {"request_id": "zzz", "label": 1, "logged_at": now},
        ],
    )
    rows = labelled_traffic(tmp_path)
    assert (
        list(rows["request_id"]) == ["a"] and rows["label"].tolist() == [0] and rows["age"].tolist() == [30.0]
    )


def test_a_truncated_part_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    now = datetime(2026, 1, 1, 10, 30, tzinfo=timezone.utc)
    write_records(tmp_path, PREDICTIONS, [record("a", at=now)])
    (bad,) = map(Path, write_records(tmp_path, PREDICTIONS, [record("b", at=now)]))
    bad.write_bytes(bad.read_bytes()[:50])
    back = read_records(tmp_path, PREDICTIONS)
    assert list(back["request_id"]) == ["a"]
    assert [r for r in caplog.records if r.levelname == "WARNING" and str(bad) in r.getMessage()]


def test_labelled_traffic_since_reads_only_the_newer_hours(tmp_path, monkeypatch):
    from app.monitoring import traffic

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for h in range(48):  # two days of one prediction + its feedback an hour
        at = start + timedelta(hours=h, minutes=10)
        write_records(tmp_path, PREDICTIONS, [record(f"r{h}", at=at)])
        write_records(
            tmp_path, FEEDBACK, [{"request_id": f"r{h}", "label": 1, "logged_at": at + timedelta(minutes=55)}]
        )
    read = []
    monkeypatch.setattr(
        traffic, "read_part", lambda root, uri, columns=None: read.append(uri) or pq.read_table(uri)
    )
    since = str(start + timedelta(hours=45, minutes=10))  # the last step used up to r45
    rows = traffic.labelled_traffic(tmp_path, since=since)
    assert list(rows["request_id"]) == ["r46", "r47"]
    # predictions from hour 45 on (3 files); feedback from hour 44 on (hours 44-48: 5 files)
    assert len(read) == 3 + 5


def test_a_reader_racing_a_compaction_reads_the_hour_again(tmp_path, monkeypatch):
    from app.monitoring import compaction, traffic

    at = datetime(2026, 1, 1, 10, 30, tzinfo=timezone.utc)
    for rid in "abc":
        write_records(tmp_path, PREDICTIONS, [record(rid, at=at)])
    real, compacted = traffic.read_part, []

    def read_part(root, uri, columns=None):  # the monitor compacts the hour after the reader listed it
        if not compacted:
            folder = Path(uri).parent
            compacted.append(
                compaction.compact_hour(folder, sorted(p.name for p in folder.iterdir()), "c.parquet")
            )
        return real(root, uri, columns)

    monkeypatch.setattr(traffic, "read_part", read_part)
    assert sorted(read_records(tmp_path, PREDICTIONS)["request_id"]) == ["a", "b", "c"]


def test_an_object_store_failing_is_raised_not_taken_for_a_damaged_file(monkeypatch, caplog):
    """On an object store an I/O error is the store (a timeout, throttling): the part must stay
    in the log, never be skipped or moved aside; a file that does not decode is still skipped."""
    import pyarrow as pa

    from app.data.shared_files import SharedFiles
    from app.monitoring.traffic import read_part

    log = SharedFiles("s3://bucket/traffic")
    uri = log.uri(PREDICTIONS, "hour=2026-01-01T10", "part-1.parquet")

    def store_down(self, uris, **kwargs):
        raise OSError("AWS Error SLOW_DOWN during GetObject operation: 503")

    monkeypatch.setattr(SharedFiles, "read_table", store_down)
    with pytest.raises(OSError, match="SLOW_DOWN"):
        read_part(log, uri)

    def damaged(self, uris, **kwargs):
        raise pa.ArrowInvalid("Parquet magic bytes not found in footer")

    monkeypatch.setattr(SharedFiles, "read_table", damaged)
    assert read_part(log, uri) is None and "unreadable traffic file" in caplog.text
