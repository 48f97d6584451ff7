"""Batch scoring's pure core against the in-process Predictor: the same scores for the same
rows, one output row per input row, bad rows quarantined with their original values."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from app.batch.checks import Layout
from app.batch.scoring import check_batch, checked_schema, score_batch, split
from app.data.synthetic import Defects, generate
from app.features.transforms import add_features
from app.model.predictor import Predictor
from tests.configs import make_config
from tests.helpers import quick_bundle

LAYOUT = Layout(entity="user_id")
NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("batch"))
    clean = Defects(0, 0, 0, 0, 0, 0)
    rows = generate(1500, seed=2, defects=clean).drop(columns=["label"])
    bundle = quick_bundle(cfg, generate(1500, seed=1, defects=clean), seed=1)
    return cfg, Predictor.from_bundle(bundle, version=4), rows


def test_scores_are_the_predictors_on_the_same_rows(model):
    cfg, predictor, rows = model
    table = score_batch(rows.astype(str), predictor, cfg, LAYOUT, now=NOW)  # as a csv reads them
    predictions, quarantine = split(table, LAYOUT)
    assert quarantine.num_rows == 0 and predictions.num_rows == len(rows)
    expected = predictor.predict_proba(add_features(rows.reset_index(drop=True), cfg))
    np.testing.assert_allclose(predictions["score"].to_numpy(), expected, atol=1e-6)
    assert predictions["user_id"].to_pylist() == rows["user_id"].tolist()
    assert set(predictions["model_version"].to_pylist()) == {4}
    ids = predictions["request_id"].to_pylist()
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)


def test_a_row_without_a_timestamp_is_scored_as_of_the_runs_start(model):
    cfg, predictor, rows = model
    no_time = rows.head(5).drop(columns=["event_timestamp"])
    got = split(score_batch(no_time, predictor, cfg, LAYOUT, now=NOW), LAYOUT)[0]["score"].to_numpy()
    expected = predictor.predict_proba(add_features(no_time.assign(event_timestamp=NOW), cfg))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_bad_rows_are_quarantined_in_place_with_their_original_values(model):
    cfg, predictor, rows = model
    batch = rows.head(6).astype(str).reset_index(drop=True)
    batch.loc[1, "age"] = "abc"
    batch.loc[4, "income"] = "-inf"
    table = score_batch(batch, predictor, cfg, LAYOUT, now=NOW)
    assert table.num_rows == 6
    assert table["_reason"].to_pylist() == [
        None,
        "age: not a number",
        None,
        None,
        "income: not a finite number",
        None,
    ]
    predictions, quarantine = split(table, LAYOUT)
    assert predictions.num_rows == 4 and quarantine.num_rows == 2
    raw = [json.loads(r) for r in quarantine["_raw"].to_pylist()]
    assert raw[0]["age"] == "abc" and raw[1]["income"] == "-inf"
    assert raw[0]["user_id"] == batch.loc[1, "user_id"]


def test_checked_batches_share_one_schema_whatever_the_files_types(model):
    """A csv's text and a parquet file's numbers give the same schema, so batches of both
    can be scored together."""
    cfg, _, rows = model
    typed = check_batch(rows.head(3), cfg, LAYOUT)
    text = check_batch(rows.head(3).astype(str), cfg, LAYOUT)
    assert typed.schema == text.schema == checked_schema(cfg, LAYOUT)
    assert typed["age"].to_pylist() == text["age"].to_pylist()


def test_nothing_in_gives_nothing_out(model):
    cfg, predictor, rows = model
    table = score_batch(rows.head(0), predictor, cfg, LAYOUT, now=NOW)
    assert table.num_rows == 0
    assert [t.num_rows for t in split(table, LAYOUT)] == [0, 0]
