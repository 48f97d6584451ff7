"""A load of outcome files into the monitor, without Ray: every row joined or quarantined with
its reason (loaded = joined + quarantined), each outcome counted once for its producer, and a
second load of the same file adding nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow.parquet as pq
import pytest

from app.data.schema import RAW, REASON
from app.monitoring import drift_tracker
from app.monitoring.drift_tracker import DriftTracker
from app.monitoring.intake import TrafficIntake
from app.monitoring.monitor import DriftMonitor
from app.monitoring.outcome_join import ALREADY_LABELLED, DUPLICATE, LATE, UNKNOWN_REQUEST_ID
from app.monitoring.outcome_load import load_outcomes
from app.monitoring.store import TrafficStore
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, read_records, traffic_log, write_records
from tests.configs import make_config
from tests.doubles import traffic_record

NOW = datetime.now(timezone.utc)


class LocalMonitor:
    """The monitor's own feedback methods over a real intake (counts, write-ahead log, parquet
    log) without Ray: answers as the actor does to what `mlsys outcomes load` calls."""

    feedback = DriftMonitor.feedback
    _feedback_batch = DriftMonitor.feedback_batch

    def __init__(self, cfg):
        self.cfg = cfg
        tracker = DriftTracker(**drift_tracker.settings(cfg))
        self.intake = TrafficIntake(TrafficStore(traffic_log(cfg.storage), cfg.monitor), tracker)
        self.batches: list[int] = []

    def _start_flusher(self) -> None:
        pass

    def flush(self) -> int:
        return self.intake.store.flush()

    def feedback_batch(self, outcomes, producer):
        self.batches.append(len(outcomes))
        return asyncio.run(self._feedback_batch(outcomes, producer=producer))

    def champion(self):
        return self.intake.counts.report(self.cfg.serve.experiment).variants["champion"]


@pytest.fixture
def cfg(tmp_path):
    cfg = make_config(tmp_path, outcomes={"late_days": 7})
    records = [traffic_record(f"r{i}", at=NOW - timedelta(hours=1), experiment="exp-1") for i in range(6)]
    records.append(traffic_record("old", at=NOW - timedelta(days=8), experiment="exp-1"))
    write_records(traffic_log(cfg.storage), PREDICTIONS, [r.row() for r in records])
    return cfg


def outcome_file(tmp_path, lines: list[str], name="outcomes.csv"):
    path = tmp_path / name
    path.write_text("request_id,label\n" + "\n".join(lines) + "\n")
    return str(path)


def test_every_row_is_joined_or_quarantined_and_a_second_load_adds_nothing(cfg, tmp_path):
    monitor = LocalMonitor(cfg)
    source = outcome_file(tmp_path, ["r0,1", "r1,0", "r2,1", "r2,0", "nope,1", "old,1", "r3,yes", "bad id,1"])
    first = load_outcomes(cfg, source, "billing", monitor=monitor, now=NOW)
    assert (first.loaded, first.counted, first.recorded) == (8, 3, 0)
    assert first.balanced() and first.joined + first.rows_quarantined == first.loaded
    assert first.quarantined == {
        DUPLICATE: 1,
        UNKNOWN_REQUEST_ID: 1,
        LATE: 1,
        "label: missing or not a label value": 1,
        "request_id: not a request id": 1,
    }
    assert first.summary().startswith("loaded 8 outcomes of billing from 1 file: 3 joined, 5 quarantined (")
    champion = monitor.champion()
    assert champion.outcomes == 3 and champion.outcomes_by_producer == {"billing": 3}
    quarantine = pq.read_table(first.quarantine_file).to_pandas()
    assert first.quarantine_file.startswith(str(cfg.storage.path(cfg.storage.quarantine)))
    assert sorted(quarantine[REASON]) == sorted(r for r, n in first.quarantined.items() for _ in range(n))
    row = quarantine[quarantine[REASON] == DUPLICATE].iloc[0]
    assert (row["_row"], json.loads(row[RAW]), row["request_id"]) == (
        4,
        {"request_id": "r2", "label": "0"},
        "r2",
    )
    assert set(quarantine["producer"]) == {"billing"}
    saved = json.loads(next(cfg.storage.path(cfg.storage.reports).glob("outcomes-*.json")).read_text())
    assert saved["loaded"] == 8 and saved["joined"] == 3

    again = load_outcomes(cfg, source, "billing", monitor=monitor, now=NOW)
    assert (again.loaded, again.joined) == (8, 0) and again.balanced()
    assert again.quarantined[ALREADY_LABELLED] == 3
    assert monitor.champion().outcomes == 3  # counted once
    logged = read_records(traffic_log(cfg.storage), FEEDBACK)  # flushed before the load answered
    assert sorted(logged["request_id"]) == ["r0", "r1", "r2"] and set(logged["producer"]) == {"billing"}
    assert logged.set_index("request_id")["label"].to_dict() == {"r0": 1, "r1": 0, "r2": 1}


def test_an_outcome_feedback_already_gave_is_quarantined_as_already_labelled(cfg, tmp_path):
    monitor = LocalMonitor(cfg)
    assert asyncio.run(monitor.feedback("r0", 1, producer="crm")) == "joined"
    report = load_outcomes(cfg, outcome_file(tmp_path, ["r0,0", "r1,1"]), "billing", monitor=monitor, now=NOW)
    assert (report.counted, report.quarantined) == (1, {ALREADY_LABELLED: 1})
    assert monitor.champion().outcomes_by_producer == {"crm": 1, "billing": 1}


def test_one_labelled_between_the_logs_read_and_the_hand_over_is_already_labelled(cfg, tmp_path):
    class Racing(LocalMonitor):
        def feedback_batch(self, outcomes, producer):
            asyncio.run(self.feedback("r1", 1, producer="crm"))  # /feedback got there first
            return super().feedback_batch(outcomes, producer)

    monitor = Racing(cfg)
    report = load_outcomes(cfg, outcome_file(tmp_path, ["r0,0", "r1,0"]), "billing", monitor=monitor, now=NOW)
    assert (report.counted, report.quarantined) == (1, {ALREADY_LABELLED: 1}) and report.balanced()


def test_predictions_the_monitor_forgot_are_recorded_for_training_and_found_labelled_later(tmp_path):
    cfg = make_config(tmp_path, monitor={"remembered_predictions": 2})
    records = [traffic_record(f"r{i}", at=NOW - timedelta(hours=1), experiment="exp-1") for i in range(4)]
    write_records(traffic_log(cfg.storage), PREDICTIONS, [r.row() for r in records])
    source = outcome_file(tmp_path, ["r0,1", "r1,1", "r2,0", "r3,1"])
    report = load_outcomes(cfg, source, "billing", monitor=LocalMonitor(cfg), now=NOW)
    assert (report.counted, report.recorded, report.rows_quarantined) == (2, 2, 0)
    assert "2 for training only" in report.summary()
    assert len(read_records(traffic_log(cfg.storage), FEEDBACK)) == 4
    again = load_outcomes(cfg, source, "billing", monitor=LocalMonitor(cfg), now=NOW)  # a restarted monitor
    assert (again.joined, again.quarantined) == (0, {ALREADY_LABELLED: 4})  # found in the feedback log
    assert len(read_records(traffic_log(cfg.storage), FEEDBACK)) == 4


def test_outcomes_go_to_the_monitor_in_batches(cfg, tmp_path, monkeypatch):
    from app.monitoring import outcome_load

    monkeypatch.setattr(outcome_load, "BATCH", 4)
    monitor = LocalMonitor(cfg)
    report = load_outcomes(
        cfg, outcome_file(tmp_path, [f"r{i},1" for i in range(6)]), "b", monitor=monitor, now=NOW
    )
    assert monitor.batches == [4, 2] and report.counted == 6 and report.quarantine_file is None


def test_entity_rows_load_by_the_latest_prediction_before_the_event(tmp_path):
    import dataclasses

    cfg = make_config(tmp_path)
    at = [NOW - timedelta(hours=h) for h in (5, 3)]
    records = [
        dataclasses.replace(traffic_record(rid, at=t, experiment="exp-1"), key="42", by_entity=True)
        for rid, t in zip(("a", "b"), at, strict=True)
    ]
    write_records(traffic_log(cfg.storage), PREDICTIONS, [r.row() for r in records])
    path = tmp_path / "by_entity.parquet"
    pd.DataFrame(
        {"user_id": [42, 42, 43], "event_timestamp": [NOW - timedelta(hours=4), NOW, NOW], "label": [1, 0, 1]}
    ).to_parquet(path)
    monitor = LocalMonitor(cfg)
    report = load_outcomes(cfg, str(path), "crm", monitor=monitor, now=NOW)
    assert (report.counted, report.rows_quarantined) == (2, 1) and report.balanced()
    logged = read_records(traffic_log(cfg.storage), FEEDBACK).set_index("request_id")["label"].to_dict()
    assert logged == {"a": 1, "b": 0}
