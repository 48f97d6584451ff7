"""The monitor's intake without Ray: records counted once, windowed and logged; a restart
rebuilds the counts and windows and accepts again what was accepted but never flushed."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from app.config import ExperimentConfig, MonitorConfig
from app.model.profile import reference_profile
from app.monitoring.drift_tracker import DriftTracker
from app.monitoring.intake import TrafficIntake
from app.monitoring.store import TrafficStore
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, read_records
from tests.doubles import traffic_record

WINDOW = 100
EXPERIMENT = ExperimentConfig(name="e")
NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def profile() -> dict:
    rng = np.random.default_rng(0)
    return reference_profile(pd.DataFrame({"income": rng.lognormal(10, 0.5, 3000)}), ["income"], [])


def start(root, profile) -> TrafficIntake:
    """A (re)started monitor's intake, in the monitor's order: reference, rebuild, replay, recover."""
    tracker = DriftTracker(window=WINDOW, psi_alert=0.2)
    tracker.follow(1, profile)
    intake = TrafficIntake(TrafficStore(root, MonitorConfig(window=WINDOW)), tracker)
    intake.replay_windows()
    intake.recover()
    return intake


def rows(n: int, *, first: int = 0, status: str = "ok") -> list[dict]:
    rng = np.random.default_rng(first)
    failed = status != "ok"
    return [
        traffic_record(
            f"r{first + i}",
            features={"income": float(x)},
            at=NOW,
            status=status,
            score=None if failed else 0.6,
            label=None if failed else 1,
        ).row()
        for i, x in enumerate(rng.lognormal(10, 0.5, n))
    ]


def requests(intake: TrafficIntake) -> int:
    return intake.counts.report(EXPERIMENT).variants["champion"].requests


def test_records_are_counted_once_windowed_when_ok_and_logged_on_flush(tmp_path, profile):
    intake = start(tmp_path, profile)
    assert len(intake.predictions(rows(150))) == 150
    assert len(intake.predictions(rows(50, first=100))) == 0  # a re-delivery
    assert len(intake.predictions(rows(10, first=500, status="error"))) == 10
    report = intake.counts.report(EXPERIMENT).variants["champion"]
    assert (report.requests, report.errors) == (150, 10)
    assert intake.tracker.windows()["champion"].window == "complete"  # errors are never windowed
    assert intake.tracker.current["champion"].n == 50
    assert (
        intake.feedback("r1", 1, producer="tests", at=NOW) == "joined"
        and intake.feedback("r1", 1, producer="tests", at=NOW) == "duplicate"
    )
    assert intake.store.flush() == 161  # 160 predictions and one outcome
    assert len(read_records(tmp_path, PREDICTIONS)) == 160 and len(read_records(tmp_path, FEEDBACK)) == 1


def test_a_restart_rebuilds_the_counts_and_the_windows_from_the_log(tmp_path, profile):
    first = start(tmp_path, profile)
    first.predictions(rows(150))
    first.store.flush()
    again = start(tmp_path, profile)
    assert requests(again) == 150
    assert again.tracker.windows()["champion"].n == WINDOW  # the recent rows replayed
    assert not again.tracker.history  # replayed windows are not drift over time again


def test_what_was_accepted_but_never_flushed_is_accepted_again_once(tmp_path, profile):
    first = start(tmp_path, profile)
    first.predictions(rows(40))
    first.feedback("r0", 1, producer="tests", at=NOW)
    first.log_feedback("gone", 0, producer="tests", at=NOW)  # logged for training, never counted
    assert read_records(tmp_path, PREDICTIONS).empty  # killed before its flush
    second = start(tmp_path, profile)
    assert requests(second) == 40 and second.counts.report(EXPERIMENT).variants["champion"].outcomes == 1
    assert len(read_records(tmp_path, PREDICTIONS)) == 40  # flushed by the recovery
    assert sorted(read_records(tmp_path, FEEDBACK)["request_id"]) == ["gone", "r0"]
    third = start(tmp_path, profile)  # recovered once: nothing is counted twice
    assert requests(third) == 40 and third.recover() == {PREDICTIONS: 0, FEEDBACK: 0}
