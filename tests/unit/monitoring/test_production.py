"""The production table: served rows joined to their outcomes, point in time, partitioned by
date, de-duplicated, shadow and failed rows left out, switched in atomically."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from app.monitoring import production
from app.monitoring.records import SHADOW_SUFFIX
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, write_records
from tests.configs import make_config
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
    root = cfg.storage.traffic
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
    parts = sorted(p.parent.name for p in (cfg.storage.production / table.build).rglob("*.parquet"))
    assert parts == ["date=2026-03-01", "date=2026-03-02"]


def test_an_outcome_arriving_later_joins_the_next_build(cfg):
    write_traffic(cfg)
    later = production.build_table(cfg, cutoff=CUTOFF + timedelta(hours=1))
    assert later.rows == 4 and "e" in set(production.read_table(cfg)["request_id"])


def test_rows_served_before_the_window_are_left_out(tmp_path):
    cfg = make_config(tmp_path, retrain={"production_days": 1})
    write_traffic(cfg)
    table = production.build_table(cfg, cutoff=CUTOFF)  # window: from 03-02T04:00
    assert table.rows == 0 and production.read_table(cfg).empty


def test_a_new_build_replaces_the_current_one_and_older_builds_go(cfg, monkeypatch):
    write_traffic(cfg)
    first = production.build_table(cfg, cutoff=CUTOFF)
    second = production.build_table(cfg, cutoff=CUTOFF + timedelta(hours=1))
    assert production.current(cfg).build == second.build
    builds = lambda: sorted(p.name for p in cfg.storage.production.glob(production.BUILD_PREFIX + "*"))  # noqa: E731
    past = production.build_table(cfg, cutoff=CUTOFF - timedelta(hours=1))  # another run's, meanwhile
    assert first.build in builds(), "a build of the last hour may still be read by another run"
    monkeypatch.setattr(production, "PRUNE_AFTER_S", -1)  # as if an hour had passed
    third = production.build_table(cfg, cutoff=CUTOFF + timedelta(hours=2))
    assert builds() == sorted([past.build, third.build]) and first.build not in builds()
    manifest = json.loads((cfg.storage.production / production.MANIFEST).read_text())
    assert manifest["build"] == third.build and manifest["cutoff"] == third.cutoff


def test_no_traffic_gives_an_empty_table(cfg):
    table = production.build_table(cfg, cutoff=CUTOFF)
    assert table.rows == 0 and production.read_table(cfg).empty


def test_an_unreadable_manifest_is_treated_as_absent_with_a_warning(cfg, caplog):
    cfg.storage.production.mkdir(parents=True)
    (cfg.storage.production / production.MANIFEST).write_text("{not json")
    assert production.current(cfg) is None
    assert any("unreadable" in r.getMessage() for r in caplog.records)
