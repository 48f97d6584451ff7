import json

import pandas as pd
import pytest

from app.config import parse_config
from app.data.schema import PART, QUARANTINE, RAW, REASON, DataError, clean_batch, to_arrow
from tests.conftest import config_dict


def _cfg(**dataset):
    data = config_dict()
    data["dataset"].update(dataset)
    return parse_config(data, environ={}).dataset


def _row(**kw):
    row = {
        "user_id": "1",
        "event_timestamp": "2026-01-05T10:00:00",
        "label": "1",
        "age": "30",
        "income": "1000.5",
        "score": "0.5",
        "country": "US",
        "gender": "F",
    }
    row.update(kw)
    return row


def _clean(rows, ds=None):
    return clean_batch(pd.DataFrame(rows), ds or _cfg())


def test_good_row_is_typed_and_partitioned_by_date():
    out = _clean([_row()])
    assert out.loc[0, PART] == "2026-01-05"
    assert out.loc[0, REASON] is None
    assert out.loc[0, "age"] == 30.0 and out.loc[0, "user_id"] == 1
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_timestamp": "not-a-date"}, "event_timestamp: missing or unparseable timestamp"),
        ({"event_timestamp": ""}, "event_timestamp: missing or unparseable timestamp"),
        ({"user_id": None}, "user_id: missing or not an integer id"),
        ({"user_id": "1.5"}, "user_id: missing or not an integer id"),
        ({"label": "2"}, "label: missing or not one of the two label values"),
        ({"age": "abc"}, "age: not a number"),
        ({"age": "150"}, "age: above maximum 120"),
        ({"age": "-1"}, "age: below minimum 0"),
        ({"score": "inf"}, "score: infinite value"),
        ({"gender": "?"}, "gender: value not in allowed list"),
    ],
)
def test_bad_rows_are_quarantined_with_reason_and_original_values(change, reason):
    out = _clean([_row(), _row(**change)])
    assert out.loc[0, PART] != QUARANTINE
    assert out.loc[1, PART] == QUARANTINE
    assert out.loc[1, REASON] == reason
    raw = json.loads(out.loc[1, RAW])
    assert raw["user_id"] == (change.get("user_id", "1") or None)


def test_null_tokens_in_a_nullable_feature_are_kept_as_missing():
    out = _clean([_row(income=v) for v in ["", "NA", "null", None, "nan"]])
    assert (out[PART] != QUARANTINE).all()
    assert out["income"].isna().all()


def test_label_map_and_rename():
    ds = _cfg(label_map={">50K": 1, "<=50K": 0}, rename={"Age": "age"})
    rows = [_row(label=">50K"), _row(label="<=50K"), _row(label="maybe")]
    for r in rows:
        r["Age"] = r.pop("age")
    out = _clean(rows, ds)
    assert out["label"].tolist()[:2] == [1, 0]
    assert out.loc[2, PART] == QUARANTINE


def test_native_types_from_parquet_are_accepted():
    df = pd.DataFrame([_row()]).astype({"age": "float64", "user_id": "int64", "label": "int64"})
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"])
    out = clean_batch(df, _cfg())
    assert out.loc[0, PART] == "2026-01-05"


def test_missing_column_is_a_data_error():
    with pytest.raises(DataError, match=r"missing required column\(s\) \['gender'\]"):
        _clean([{k: v for k, v in _row().items() if k != "gender"}])


def test_arrow_schema_is_fixed_whatever_the_batch_holds():
    ds = _cfg()
    good = to_arrow(_clean([_row()]), ds)
    bad = to_arrow(_clean([_row(age="x", country=None)]), ds)
    assert good.schema == bad.schema
