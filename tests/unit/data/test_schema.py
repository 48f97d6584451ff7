import json

import numpy as np
import pandas as pd
import pytest

from app.config import parse_config
from app.data.schema import (
    ID_INFINITE,
    ID_MISSING,
    ID_NOT_INTEGER,
    ID_OUT_OF_RANGE,
    PART,
    QUARANTINE,
    RAW,
    REASON,
    DataError,
    clean_batch,
    coerce_int_ids,
    to_arrow,
)
from tests.configs import config_dict


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
        ({"user_id": None}, "user_id: missing id"),
        ({"user_id": "1.5"}, "user_id: not an integer id"),
        ({"user_id": "inf"}, "user_id: infinite id"),
        ({"user_id": str(2**63)}, "user_id: id outside the int64 range"),
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


# ---------------------------------------------------------------- exact integer ids

BIG = 2**53  # float64 rounds BIG + 1 to BIG: through float, two ids become one


def _ids(values, dtype=object):
    ids, why = coerce_int_ids(pd.Series(values, dtype=dtype))
    return ids.tolist(), why.tolist()


@pytest.mark.parametrize(
    "values",
    [
        [str(BIG), str(BIG + 1), str(BIG + 2)],
        [f" {BIG} ", f"{BIG + 1}", f"{BIG + 2}.0"],  # the careful path
        [BIG, BIG + 1, BIG + 2],  # Python ints, as json gives them
    ],
    ids=["text", "padded-text", "python-ints"],
)
def test_ids_above_2_53_stay_exact_and_distinct(values):
    assert _ids(values) == ([BIG, BIG + 1, BIG + 2], [None, None, None])


def test_native_integer_columns_are_exact():
    assert _ids([BIG + 1, BIG + 2], "int64") == ([BIG + 1, BIG + 2], [None, None])
    assert _ids([BIG + 1, None], "Int64") == ([BIG + 1, 0], [None, ID_MISSING])
    assert _ids([2**63 - 1, 2**63], "uint64") == ([2**63 - 1, 0], [None, ID_OUT_OF_RANGE])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (str(2**63), ID_OUT_OF_RANGE),
        (str(-(2**63) - 1), ID_OUT_OF_RANGE),
        (2**63, ID_OUT_OF_RANGE),
        ("1e30", ID_OUT_OF_RANGE),
        ("1e999999999", ID_OUT_OF_RANGE),  # refused without building a huge integer
        ("inf", ID_INFINITE),
        ("-Infinity", ID_INFINITE),
        (float("inf"), ID_INFINITE),
        ("1.5", ID_NOT_INTEGER),
        ("abc", ID_NOT_INTEGER),
        ("1_000", ID_NOT_INTEGER),
        (True, ID_NOT_INTEGER),
        ("", ID_MISSING),
        ("  ", ID_MISSING),
        ("NaN", ID_MISSING),
        (None, ID_MISSING),
        (float("nan"), ID_MISSING),
    ],
)
def test_bad_ids_are_refused_with_their_reason(value, reason):
    assert _ids(["7", value]) == ([7, 0], [None, reason])


def test_integral_spellings_are_accepted_exactly():
    values = ["+5", "-0", "007", "1.0", "1e3", str(-(2**63)), str(2**63 - 1)]
    assert _ids(values)[0] == [5, 0, 7, 1, 1000, -(2**63), 2**63 - 1]


def test_float_columns_refuse_what_is_not_an_int64():
    ids, why = _ids([3.0, 1.5, np.inf, -np.inf, np.nan, 2.0**63, -(2.0**63)], "float64")
    assert ids == [3, 0, 0, 0, 0, 0, -(2**63)]
    assert why == [None, ID_NOT_INTEGER, ID_INFINITE, ID_INFINITE, ID_MISSING, ID_OUT_OF_RANGE, None]


def test_boolean_ids_are_refused():
    assert _ids([True, False], "bool")[1] == [ID_NOT_INTEGER, ID_NOT_INTEGER]


def test_clean_batch_keeps_big_ids_distinct_and_quarantines_bad_ones():
    out = _clean([_row(user_id=str(BIG)), _row(user_id=str(BIG + 1)), _row(user_id="inf")])
    assert out["user_id"].dtype == "int64"
    assert out["user_id"].tolist()[:2] == [BIG, BIG + 1]
    assert out[PART].tolist() == ["2026-01-05", "2026-01-05", QUARANTINE]
    assert out.loc[2, REASON] == "user_id: infinite id"
    assert json.loads(out.loc[2, RAW])["user_id"] == "inf"


def test_a_string_entity_type_is_unaffected():
    ds = _cfg(entity_type="string")
    out = _clean([_row(user_id=str(BIG + 1)), _row(user_id="inf"), _row(user_id="1.5")], ds)
    assert out["user_id"].tolist() == [str(BIG + 1), "inf", "1.5"]
    assert (out[PART] != QUARANTINE).all()
