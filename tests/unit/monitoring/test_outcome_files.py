"""Outcome files read and checked row by row: every row is kept, good or with the first reason
it fails; a file that cannot be used at all is one DataError line."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest

from app.config import DatasetConfig
from app.data.schema import REASON, DataError
from app.monitoring.outcome_files import (
    EVENT_AT,
    FILE,
    KEY,
    LABEL,
    REQUEST_ID,
    REQUEST_ID_PATTERN,
    ROW,
    check_rows,
    read_outcomes,
)

NOW = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
DS = DatasetConfig(numeric=["income"])  # entity user_id (int64), timestamp event_timestamp, label


def checked(rows: list[dict], ds: DatasetConfig = DS) -> pd.DataFrame:
    return check_rows(pd.DataFrame(rows, dtype=object), ds, now=NOW)


def test_request_id_rows_are_kept_with_their_label_or_the_reason_they_fail():
    out = checked(
        [
            {"request_id": "abc-1", "label": "1"},
            {"request_id": " abc_2 ", "label": 0},
            {"request_id": "has space", "label": 1},
            {"request_id": "x" * 65, "label": 1},
            {"request_id": "ok-3", "label": "2"},
            {"request_id": "ok-4", "label": ""},
            {"request_id": "ok-5", "label": "1.0"},
            {"request_id": "", "label": 1},
        ]
    )
    assert out[REQUEST_ID].tolist()[:2] == ["abc-1", "abc_2"]  # stripped
    assert out[LABEL].tolist()[:2] == [1, 0] and out[LABEL].iloc[6] == 1
    assert out[REASON].tolist() == [
        None,
        None,
        "request_id: not a request id",
        "request_id: not a request id",
        "label: missing or not a label value",
        "label: missing or not a label value",
        None,
        "request_id: missing",  # and no entity to fall back on
    ]


def test_entity_rows_name_an_entity_and_a_time_not_after_the_load():
    out = checked(
        [
            {"user_id": "7", "event_timestamp": "2026-01-09T10:00:00Z", "label": 1},
            {"user_id": "9007199254740993", "event_timestamp": "2026-01-09 10:00", "label": 0},
            {"user_id": "1.5", "event_timestamp": "2026-01-09", "label": 1},
            {"user_id": None, "event_timestamp": "2026-01-09", "label": 1},
            {"user_id": "7", "event_timestamp": "yesterday-ish", "label": 1},
            {"user_id": "7", "event_timestamp": "2026-02-01", "label": 1},
        ]
    )
    assert out[KEY].tolist()[:2] == ["7", "9007199254740993"]  # exact, as the log's key
    assert out[EVENT_AT].iloc[1] == pd.Timestamp("2026-01-09 10:00", tz="UTC")  # no zone: UTC
    assert out[REASON].tolist() == [
        None,
        None,
        "user_id: not an integer id",
        "user_id: missing id",
        "event_timestamp: missing or unparseable timestamp",
        "event_timestamp: later than the load time",
    ]


def test_a_request_id_wins_over_the_entity_and_the_first_reason_stays():
    out = checked(
        [
            {"request_id": "r1", "user_id": "junk", "event_timestamp": "junk", "label": 1},
            {"request_id": None, "user_id": "junk", "event_timestamp": "junk", "label": "junk"},
        ]
    )
    assert out[REASON].tolist() == [None, "user_id: not an integer id"]
    assert out[KEY].tolist() == [None, None]


def test_labels_are_zero_and_one_or_the_label_maps_raw_values():
    ds = DatasetConfig(numeric=["income"], label="income_band", label_map={">50K": 1, "<=50K": 0})
    out = checked(
        [
            {"request_id": "a", "income_band": ">50K"},
            {"request_id": "b", "income_band": " <=50K "},
            {"request_id": "c", "income_band": "1"},
            {"request_id": "d", "income_band": "50K"},
        ],
        ds,
    )
    assert out[LABEL].tolist()[:3] == [1, 0, 1]
    assert out[REASON].tolist() == [None, None, None, "income_band: missing or not a label value"]
    plain = checked([{"request_id": "e", "label": "1"}], ds)  # /feedback's name for the column
    assert plain[REASON].tolist() == [None] and plain[LABEL].tolist() == [1]


def test_a_file_of_no_rows_checks_to_nothing():
    frame = pd.DataFrame(columns=["request_id", "user_id", "event_timestamp", "label"], dtype=object)
    assert check_rows(frame, DS, now=NOW).empty


# ---------------------------------------------------------------- reading


def test_csv_parquet_and_jsonl_are_read_with_each_rows_file_and_line(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.csv").write_text("request_id,label\nr1,1\nr2,0\n")
    pd.DataFrame({"request_id": ["r3"], "label": [1]}).to_parquet(folder / "b.parquet")
    (folder / "c.jsonl").write_text(
        json.dumps({"user_id": 9007199254740993, "event_timestamp": "2026-01-09", "label": 1})
    )
    (folder / ".hidden.csv").write_text("garbage")
    frame, files = read_outcomes(str(folder), DS)
    assert files == 3 and len(frame) == 4
    assert [f.rsplit("/", 1)[-1] for f in frame[FILE]] == ["a.csv", "a.csv", "b.parquet", "c.jsonl"]
    assert frame[ROW].tolist() == [1, 2, 1, 1]
    out = check_rows(frame, DS, now=NOW)
    assert out[REASON].isna().all()
    assert out[KEY].iloc[3] == "9007199254740993"  # JSON ids stay exact


def test_the_datasets_renames_apply_to_outcome_files(tmp_path):
    ds = DatasetConfig(numeric=["income"], rename={"customer": "user_id", "when": "event_timestamp"})
    path = tmp_path / "o.csv"
    path.write_text("customer,when,label\n7,2026-01-09,1\n")
    frame, _ = read_outcomes(str(path), ds)
    assert check_rows(frame, ds, now=NOW)[KEY].tolist() == ["7"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nothing.csv", None, "does not exist"),
        ("empty.csv", "", "the file is empty"),
        ("broken.parquet", "not parquet at all", "not a readable parquet file"),
        ("broken.csv", 'request_id,label\n"r1,1\n', "not a readable csv file"),
        ("broken.jsonl", '{"request_id": "r1", "label": 1}\n{not json\n', "not a readable json file"),
        ("nolabel.csv", "request_id,score\nr1,0.5\n", "missing column(s) label"),
        ("noid.csv", "user_id,label\n7,1\n", "missing column(s) request_id (or event_timestamp)"),
    ],
)
def test_a_file_that_cannot_be_used_is_one_clear_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match="^[^\n]+$") as caught:
        read_outcomes(str(path), DS)
    assert message in str(caught.value)


def test_request_ids_are_the_ones_feedback_takes():
    from app.serving.schemas import Feedback

    pattern = next(m.pattern for m in Feedback.model_fields["request_id"].metadata if hasattr(m, "pattern"))
    assert pattern == r"^[A-Za-z0-9_-]+$" and REQUEST_ID_PATTERN.pattern == r"^[A-Za-z0-9_-]{1,64}$"
