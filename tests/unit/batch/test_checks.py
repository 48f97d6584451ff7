"""Batch scoring's row checks: a row serving would refuse gets its reason, every other row is
kept with its values typed, and no row is dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.batch.checks import Layout, category, check_rows, entity, numeric, timestamp
from tests.configs import make_config


def no_reasons(n: int) -> pd.Series:
    return pd.Series([None] * n, dtype=object)


def test_numbers_are_parsed_and_junk_infinities_and_huge_values_refused():
    col = pd.Series(["41", None, "abc", "inf", "1e20", "-3.5"], dtype=object)
    reasons = no_reasons(len(col))
    values = numeric(col, "age", reasons, required=False)
    assert values.iloc[0] == 41 and np.isnan(values.iloc[1]) and values.iloc[5] == -3.5
    assert reasons.tolist() == [
        None,
        None,  # a missing value is scored as serving scores a null
        "age: not a number",
        "age: not a finite number",
        "age: magnitude above 1e+15",
        None,
    ]


def test_booleans_are_not_numbers_and_a_required_value_must_be_there():
    reasons = no_reasons(2)
    numeric(pd.Series([True, False]), "age", reasons, required=False)
    assert reasons.tolist() == ["age: not a number"] * 2
    reasons = no_reasons(2)
    numeric(pd.Series([1.0, None]), "age", reasons, required=True)
    assert reasons.tolist() == [None, "age: required value is missing"]


def test_categories_must_be_short_text_and_unknown_ones_pass():
    col = pd.Series(["US", None, 7, "X" * 20, "Atlantis"], dtype=object)
    reasons = no_reasons(len(col))
    values = category(col, "country", reasons, required=False, max_length=10)
    assert reasons.tolist() == [None, None, "country: not text", "country: longer than 10 characters", None]
    assert values.iloc[0] == "US" and values.iloc[1] is None and values.iloc[4] == "Atlantis"


def test_timestamps_are_iso_text_or_missing():
    col = pd.Series(["2026-01-02T03:04:05Z", None, "yesterday"], dtype=object)
    reasons = no_reasons(3)
    values = timestamp(col, "event_timestamp", reasons)
    assert values.iloc[0] == pd.Timestamp("2026-01-02T03:04:05Z") and pd.isna(values.iloc[1])
    assert reasons.tolist() == [None, None, "event_timestamp: not an ISO 8601 timestamp"]


def test_integer_ids_stay_exact_and_bad_ones_are_refused():
    big = 2**62 + 1  # float64 would round it
    col = pd.Series([str(big), None, "1.5", "7"], dtype=object)
    reasons = no_reasons(4)
    ids = entity(col, "user_id", "int64", reasons)
    assert ids.iloc[0] == big and ids.iloc[3] == 7
    assert reasons.tolist() == [None, "user_id: missing id", "user_id: not an integer id", None]


def test_check_rows_keeps_every_row_with_its_first_reason(tmp_path):
    cfg = make_config(tmp_path)
    batch = pd.DataFrame(
        {
            "user_id": ["1", "2", "3"],
            "age": ["30", "abc", "x"],
            "income": ["1", "2", "inf"],
            "score": ["0.1", "0.2", "0.3"],
            "country": ["US", "GB", "DE"],
            "gender": ["F", "M", "F"],
            "ref": ["a", "b", "c"],
        }
    )
    clean, reasons = check_rows(batch, cfg, Layout(entity="user_id", keys=("ref",)))
    assert len(clean) == 3 and reasons.tolist() == [None, "age: not a number", "age: not a number"]
    assert clean["ref"].tolist() == ["a", "b", "c"]
    assert clean["event_timestamp"].isna().all()  # no timestamp column: scored as of the run's start
