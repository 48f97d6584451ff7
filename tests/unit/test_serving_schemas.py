"""Request models and the OIP v2 tensor conversion, built from the config (no Ray)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from app.serving import oip
from app.serving.schemas import request_models
from app.serving.scoring import raw_rows_to_frame

ROW = {"age": 30, "income": 1000.5, "score": 0.2, "country": "US", "gender": "M"}


@pytest.fixture
def models(cfg):
    return request_models(cfg)


def test_the_three_request_shapes(models):
    assert models.PredictRequest.model_validate({"entity_id": 3}).rows()[0].entity_id == 3
    assert models.PredictRequest.model_validate({"features": ROW, "key": "u1"}).rows()[0].key == "u1"
    batch = models.PredictRequest.model_validate({"instances": [{"entity_id": 1}, {"features": ROW}]})
    assert len(batch.rows()) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"features": {**ROW, "age": "30"}},  # a string where a number belongs
        {"features": {**ROW, "age": math.nan}},
        {"features": {**ROW, "income": math.inf}},
        {"features": {**ROW, "age": 10**400}},  # beyond any float
        {"features": {**ROW, "country": 5}},
        {"features": {k: v for k, v in ROW.items() if k != "age"}},
        {"features": {**ROW, "extra": 1}},
        {"entity_id": 1, "features": ROW},
        {"entity_id": 1, "key": "x"},
        {"entity_id": True},
        {"instances": []},
        {"instances": [{}]},
        {},
    ],
)
def test_bad_requests_are_refused(models, body):
    with pytest.raises(ValidationError):
        models.PredictRequest.model_validate(body)


def test_null_features_are_allowed_and_scored_as_missing(models, cfg):
    req = models.PredictRequest.model_validate({"features": {**ROW, "income": None, "country": None}})
    frame = raw_rows_to_frame([req.features.model_dump()], cfg)
    assert math.isnan(frame["income"].iloc[0]) and frame["country"].iloc[0] is None
    assert {"hour", "age_bucket", "age_bucket_x_gender"} <= set(frame.columns)


def _tensors(n=2):
    return [
        {"name": "age", "shape": [n], "datatype": "INT64", "data": [30] * n},
        {"name": "income", "shape": [n, 1], "datatype": "FP32", "data": [[1.0]] * n},
        {"name": "score", "shape": [n], "datatype": "FP64", "data": [0.5] * n},
        {"name": "country", "shape": [n], "datatype": "BYTES", "data": ["US"] * n},
        {"name": "gender", "shape": [n], "datatype": "BYTES", "data": ["F"] * n},
    ]


def test_v2_tensors_become_rows(cfg):
    rows = oip.request_rows(oip.InferRequest.model_validate({"inputs": _tensors(3)}), cfg)
    assert len(rows) == 3 and rows[0] == {
        "age": 30,
        "income": 1.0,
        "score": 0.5,
        "country": "US",
        "gender": "F",
    }


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: t[:-1], "missing"),
        (lambda t: [*t, {"name": "height", "shape": [2], "datatype": "FP32", "data": [1, 2]}], "height"),
        (lambda t: [{**t[0], "shape": [3]}, *t[1:]], "holds"),
        (lambda t: [{**t[0], "datatype": "BYTES"}, *t[1:]], "numeric"),
        (lambda t: [*t[:3], {**t[3], "datatype": "FP32"}, t[4]], "BYTES"),
        (lambda t: [{**t[0], "data": ["a", "b"]}, *t[1:]], "finite number"),
        (lambda t: [{**t[0], "shape": [2, 2], "data": [1, 2, 3, 4]}, *t[1:]], "shape"),
        (lambda t: [*t, t[0]], "twice"),
    ],
)
def test_v2_bad_tensors_name_the_input(cfg, change, needle):
    req = oip.InferRequest.model_validate({"inputs": change(_tensors())})
    with pytest.raises(oip.OipError, match=needle):
        oip.request_rows(req, cfg)
