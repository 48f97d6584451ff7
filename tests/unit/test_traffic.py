"""The traffic log and the experiment counts: idempotent, joined, persisted atomically."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.monitoring.shipper import TrafficShipper
from app.monitoring.traffic import PREDICTIONS, ExperimentCounts, read_records, write_records
from tests.helpers import prediction_record


def record(rid, variant="champion", label=1, status="ok", at=None):
    return prediction_record(
        rid, features={"age": 30.0}, at=at, variant=variant, pred_score=0.7, pred_label=label, status=status
    )


def test_redelivered_predictions_and_feedback_count_once():
    counts = ExperimentCounts()
    assert counts.add_prediction(record("a"))
    assert not counts.add_prediction(record("a"))
    assert counts.add_feedback("a", 1) == "joined"
    assert counts.add_feedback("a", 0) == "duplicate"
    s = counts.for_experiment("e")["champion"]
    assert (s.requests, s.outcomes, s.correct, s.positives) == (1, 1, 1, 1)


def test_feedback_before_its_prediction_waits_and_then_joins():
    counts = ExperimentCounts()
    assert counts.add_feedback("b", 0) == "pending"
    counts.add_prediction(record("b", variant="challenger", label=1))
    s = counts.for_experiment("e")["challenger"]
    assert (s.outcomes, s.correct, s.positives) == (1, 0, 0)
    assert not counts.pending


def test_errors_are_counted_apart_from_requests():
    counts = ExperimentCounts()
    counts.add_prediction(record("c", status="error"))
    s = counts.for_experiment("e")["champion"]
    assert (s.requests, s.errors) == (0, 1)


def test_memory_stays_bounded():
    counts = ExperimentCounts(capacity=100)
    for i in range(1000):
        counts.add_prediction(record(f"r{i}"))
        counts.add_feedback(f"x{i}", 1)
    assert len(counts.predictions) == 100 and len(counts.pending) == 100


def test_records_land_in_hour_partitions_and_read_back_deduplicated(tmp_path):
    now = datetime(2026, 1, 1, 10, 30, tzinfo=timezone.utc)
    write_records(tmp_path, PREDICTIONS, [record("a", at=now), record("b", at=now + timedelta(hours=1))])
    write_records(tmp_path, PREDICTIONS, [record("a", at=now)])  # a re-delivery
    hours = sorted(p.name for p in (tmp_path / PREDICTIONS).iterdir())
    assert hours == ["hour=2026-01-01T10", "hour=2026-01-01T11"]
    assert not list(tmp_path.rglob(".*tmp"))  # no half-written files left
    back = read_records(tmp_path, PREDICTIONS)
    assert sorted(back["request_id"]) == ["a", "b"]


def test_shipper_drops_and_counts_when_full_or_the_monitor_is_unreachable():
    sent = []

    def send(batch, dropped):
        sent.append((len(batch), dropped))
        raise ConnectionError("monitor down")

    shipper = TrafficShipper(send, capacity=5, batch_size=10)
    for i in range(8):
        shipper.add({"request_id": str(i)})
    assert shipper.dropped_total == 3  # over capacity: counted, not blocking
    shipper.pump()
    assert sent == [(5, 3)] and shipper.dropped_total == 8 and not shipper.buffer


def test_feedback_joins_the_log_into_training_rows(tmp_path):
    from app.monitoring.traffic import FEEDBACK, labelled_traffic

    now = datetime.now(timezone.utc)
    shadow = {**record("a-shadow", variant="challenger"), "shadow": True}
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
