"""The production table: served rows joined to their outcomes, point in time, partitioned by
date, de-duplicated, shadow and failed rows left out, each build one Iceberg commit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from app.monitoring import production
from app.monitoring.records import SHADOW_SUFFIX
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, traffic_log, write_records
from tests.configs import make_config
from tests.duck import duckdb_with_iceberg
from tests.helpers import model_inputs, prediction_record

DAY1 = datetime(2026, 3, 1, 22, 0, tzinfo=timezone.utc)
CUTOFF = DAY1 + timedelta(days=1, hours=6)  # 2026-03-03T04:00


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path, retrain={"production_days": 30})


def served(cfg, ids, *, at, **kwargs):
    """Prediction records with real model inputs, logged at `at`."""
    frame = model_inputs(cfg, len(ids), seed=len(ids)).drop(columns=[cfg.dataset.label])
    return [
        prediction_record(rid, features=row, at=at, **kwargs)
        for rid, row in zip(ids, frame.to_dict("records"), strict=True)
    ]


def outcome(rid, label, at):
    return {"request_id": rid, "label": label, "producer": "tests", "logged_at": at}


def write_traffic(cfg):
    root = traffic_log(cfg.storage)
    write_records(root, PREDICTIONS, served(cfg, ["a", "b", "c"], at=DAY1))  # date 2026-03-01
    write_records(root, PREDICTIONS, served(cfg, ["d", "e"], at=DAY1 + timedelta(hours=3)))  # 03-02
    write_records(root, PREDICTIONS, served(cfg, ["a"], at=DAY1))  # a re-delivery of "a"
    shadow = served(cfg, ["b"], at=DAY1, variant="challenger")[0]
    write_records(root, PREDICTIONS, [{**shadow, "request_id": "b" + SHADOW_SUFFIX, "shadow": True}])
    write_records(root, PREDICTIONS, served(cfg, ["f"], at=DAY1, status="error"))
    labelled = DAY1 + timedelta(hours=5)
    write_records(
        root,
        FEEDBACK,
        [
            outcome("a", 1, labelled),
            outcome("b", 0, labelled),
            outcome("b" + SHADOW_SUFFIX, 0, labelled),
            outcome("d", 1, labelled),
            outcome("f", 1, labelled),
            outcome("e", 0, CUTOFF + timedelta(minutes=1)),  # arrived after the cutoff
            # "c" never gets an outcome
        ],
    )
    write_records(root, FEEDBACK, [outcome("a", 0, labelled + timedelta(hours=1))])  # a repeat


def test_only_outcomes_known_at_the_cutoff_count_once_per_request(cfg):
    write_traffic(cfg)
    table = production.build_table(cfg, cutoff=CUTOFF)
    assert (table.rows, table.dates) == (3, ("2026-03-01", "2026-03-02"))
    rows = production.read_table(cfg)
    assert sorted(rows["request_id"]) == ["a", "b", "d"]
    by_id = rows.set_index("request_id")
    assert by_id.loc["a", cfg.dataset.label] == 1  # the first outcome reported, not the repeat
    assert by_id.loc["d", "date"] == "2026-03-02"
    assert (rows["labelled_at"] <= CUTOFF).all() and (rows["served_at"] <= CUTOFF).all()
    # The features as they were served, every model input present
    from app.features.transforms import feature_spec

    assert set(feature_spec(cfg).names) <= set(rows.columns)
    files = production.open_table(cfg).scan(snapshot_id=table.snapshot_id).plan_files()
    assert sorted(task.file.partition[0] for task in files) == ["2026-03-01", "2026-03-02"]


def test_an_outcome_arriving_later_joins_the_next_build(cfg):
    write_traffic(cfg)
    later = production.build_table(cfg, cutoff=CUTOFF + timedelta(hours=1))
    assert later.rows == 4 and "e" in set(production.read_table(cfg)["request_id"])


def test_rows_served_before_the_window_are_left_out(tmp_path):
    cfg = make_config(tmp_path, retrain={"production_days": 1})
    write_traffic(cfg)
    table = production.build_table(cfg, cutoff=CUTOFF)  # window: from 03-02T04:00
    assert table.rows == 0 and production.read_table(cfg).empty


def test_a_new_build_replaces_the_current_one_and_earlier_builds_stay_readable(cfg):
    write_traffic(cfg)
    first = production.build_table(cfg, cutoff=CUTOFF)
    second = production.build_table(cfg, cutoff=CUTOFF + timedelta(hours=1))
    assert production.current(cfg) == second and second.snapshot_id != first.snapshot_id
    assert len(production.read_table(cfg)) == 4
    held = production.read_table(cfg, first)  # a run that built `first` still reads its rows
    assert sorted(held["request_id"]) == ["a", "b", "d"]
    summary = production.open_table(cfg).snapshot_by_id(second.snapshot_id).summary
    assert summary.additional_properties[production.BUILD_KEY] == second.build
    empty = production.build_table(cfg, cutoff=CUTOFF + timedelta(days=90))  # every row outside the window
    assert production.current(cfg) == empty and empty.rows == 0 and production.read_table(cfg).empty
    assert len(production.read_table(cfg, second)) == 4


def test_no_traffic_gives_an_empty_table(cfg):
    table = production.build_table(cfg, cutoff=CUTOFF)
    assert table.rows == 0 and production.read_table(cfg).empty


def test_an_unreadable_current_build_is_treated_as_absent_with_a_warning(cfg, caplog):
    write_traffic(cfg)
    production.build_table(cfg, cutoff=CUTOFF)
    table = production.open_table(cfg)
    table.transaction().set_properties({production.CURRENT_KEY: "{not json"}).commit_transaction()
    assert production.current(cfg) is None
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_duckdb_reads_each_build_at_its_snapshot_as_mlsys_does(cfg):
    """Another engine, given only the table's metadata file, reads the rows of each build."""
    write_traffic(cfg)
    builds = [production.build_table(cfg, cutoff=CUTOFF + timedelta(hours=h)) for h in (0, 1)]
    metadata = production.open_table(cfg).metadata_location
    con = duckdb_with_iceberg()
    for build in builds:
        ours = production.read_table(cfg, build)
        theirs = con.execute(
            f"SELECT * FROM iceberg_scan('{metadata}', snapshot_from_id={build.snapshot_id})"
        ).df()
        theirs = theirs[ours.columns].sort_values("served_at", kind="stable").reset_index(drop=True)
        assert sorted(theirs["request_id"]) == sorted(ours["request_id"]) and len(theirs) == build.rows
        pd.testing.assert_frame_equal(theirs.astype(ours.dtypes.to_dict()), ours, check_exact=False)
