"""Outcome rows joined to the served predictions in the traffic log: by request id, or by the
entity's latest prediction at or before the event; refused when unknown, late, repeated within
the load or already labelled."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pandas as pd

from app.config import DatasetConfig
from app.data.schema import REASON
from app.monitoring.outcome_files import check_rows
from app.monitoring.outcome_join import (
    DUPLICATE,
    LATE,
    PREDICTED_AT,
    UNKNOWN_REQUEST_ID,
    labelled_ids,
    no_prediction,
    resolve,
    served_predictions,
)
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, write_records
from tests.doubles import traffic_record

NOW = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
DS = DatasetConfig(numeric=["income"])


def ago(**delta) -> datetime:
    return NOW - timedelta(**delta)


def logged(root, *specs, by_entity: bool = True) -> None:
    """Predictions in the log: (request id, key, logged at, and TrafficRecord fields); a key
    other than the request id is an entity id the row was scored for, unless `by_entity` is off
    (a key the client chose)."""
    rows = [
        dataclasses.replace(
            traffic_record(rid, at=at, **fields), key=key, by_entity=by_entity and key != rid
        ).row()
        for rid, key, at, *rest in specs
        for fields in [rest[0] if rest else {}]
    ]
    write_records(root, PREDICTIONS, rows)


def joined(root, rows: list[dict], *, late_days: float = 7) -> pd.DataFrame:
    out = check_rows(pd.DataFrame(rows, dtype=object), DS, now=NOW)
    good = out[REASON].isna()
    found = served_predictions(root, request_ids=out.loc[good, "request_id"], keys=out.loc[good, "_key"])
    resolve(out, found, DS, now=NOW, late_days=late_days)
    return out


def test_only_served_predictions_are_found_by_request_id_or_key(tmp_path):
    logged(
        tmp_path,
        ("r1", "r1", ago(hours=1)),
        ("r2", "7", ago(hours=2)),
        ("r3", "r3", ago(hours=1), {"shadow": True}),  # logged as r3-shadow
        ("r4", "r4", ago(hours=1), {"status": "error", "score": None, "label": None}),
        ("r5", "8", ago(hours=1)),
    )
    found = served_predictions(tmp_path, request_ids=["r1", "r3-shadow", "r4", "nope"], keys=["7"])
    assert sorted(found["request_id"]) == ["r1", "r2"]
    assert str(found["logged_at"].dtype) == "datetime64[us, UTC]"
    assert served_predictions(tmp_path / "nothing", request_ids=["r1"], keys=[]).empty


def test_request_id_rows_join_their_prediction_within_the_window_once(tmp_path):
    logged(tmp_path, ("r1", "r1", ago(days=1)), ("r2", "r2", ago(days=8)), ("r3", "r3", ago(hours=1)))
    out = joined(
        tmp_path,
        [
            {"request_id": "r1", "label": 1},
            {"request_id": "r2", "label": 1},
            {"request_id": "nope", "label": 1},
            {"request_id": "r1", "label": 0},
            {"request_id": "r3", "label": 0},
        ],
    )
    assert out[REASON].tolist() == [None, LATE, UNKNOWN_REQUEST_ID, DUPLICATE, None]
    assert out.loc[0, PREDICTED_AT] == pd.Timestamp(ago(days=1))
    assert joined(tmp_path, [{"request_id": "r2", "label": 1}], late_days=9)[REASON].tolist() == [None]


def test_entity_rows_label_the_latest_prediction_at_or_before_the_event(tmp_path):
    logged(
        tmp_path,
        ("a", "7", ago(hours=5)),
        ("b", "7", ago(hours=3)),
        ("c", "7", ago(hours=1)),
        ("d", "8", ago(days=9)),
        ("e", "9", ago(hours=2), {"shadow": True}),
    )
    out = joined(
        tmp_path,
        [
            {"user_id": "7", "event_timestamp": ago(hours=2).isoformat(), "label": 1},  # b
            {"user_id": "7", "event_timestamp": ago(hours=3).isoformat(), "label": 1},  # b, exactly: again
            {"user_id": "7", "event_timestamp": ago(hours=6).isoformat(), "label": 1},  # none yet
            {"user_id": "8", "event_timestamp": ago(days=1).isoformat(), "label": 1},  # d: too old
            {"user_id": "9", "event_timestamp": ago(hours=1).isoformat(), "label": 1},  # only a shadow
            {"user_id": "10", "event_timestamp": ago(hours=1).isoformat(), "label": 1},  # never seen
            {"user_id": "7", "event_timestamp": NOW.isoformat(), "label": 0},  # c
        ],
    )
    assert out["request_id"].tolist()[:2] == ["b", "b"] and out["request_id"].iloc[6] == "c"
    assert out[REASON].tolist() == [
        None,
        DUPLICATE,
        no_prediction(DS),
        LATE,
        no_prediction(DS),
        no_prediction(DS),
        None,
    ]


def test_a_client_key_that_names_an_entity_never_takes_that_entitys_outcome(tmp_path):
    """A caller who sends its own features with `key` set to a victim's id gets no outcome the
    producer reports for that entity (its features, the producer's trusted label)."""
    logged(tmp_path, ("forged", "7", ago(hours=1)), by_entity=False)
    logged(tmp_path, ("real", "7", ago(hours=3)))
    out = joined(tmp_path, [{"user_id": "7", "event_timestamp": NOW.isoformat(), "label": 1}])
    assert out["request_id"].tolist() == ["real"] and out[REASON].tolist() == [None]


def test_a_mixed_load_joins_each_row_its_own_way(tmp_path):
    logged(tmp_path, ("a", "7", ago(hours=3)), ("r1", "r1", ago(hours=1)))
    out = joined(
        tmp_path,
        [
            {"request_id": "r1", "user_id": None, "event_timestamp": None, "label": 1},
            {"request_id": None, "user_id": "7", "event_timestamp": ago(hours=2).isoformat(), "label": 0},
            {"request_id": "a", "user_id": None, "event_timestamp": None, "label": 0},  # the same prediction
        ],
    )
    assert out["request_id"].tolist() == ["r1", "a", "a"]
    assert out[REASON].tolist() == [None, None, DUPLICATE]


def test_outcomes_in_the_feedback_log_are_found_by_request_id(tmp_path):
    write_records(
        tmp_path,
        FEEDBACK,
        [{"request_id": r, "label": 1, "producer": "crm", "logged_at": NOW} for r in ("r1", "r2")],
    )
    assert labelled_ids(tmp_path, ["r1", "r3", None]) == {"r1"}
    assert labelled_ids(tmp_path / "nothing", ["r1"]) == set()
