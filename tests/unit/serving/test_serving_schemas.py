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
        {"features": {**ROW, "income": 1e308}},  # finite, but overflows float32 once scaled
        {"features": {**ROW, "income": -(10**16)}},
        {"features": {**ROW, "country": "x" * 257}},  # over serve.max_string_length
        {"entity_id": 1180591620717411303424},  # beyond int64: no store could hold it
        {"features": ROW, "key": 2**64},
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
        (lambda t: [{**t[0], "data": ["a", "b"]}, *t[1:]], "not a number"),
        (lambda t: [{**t[0], "data": [10**400, 1]}, *t[1:]], "not a number within"),
        (lambda t: [{**t[1], "data": [1e308, 1.0]}, t[0], *t[2:]], "not a number within"),
        (lambda t: [*t[:3], {**t[3], "data": ["x" * 257, "US"]}, t[4]], "longer than 256"),
        (lambda t: [{**t[0], "shape": [2, 2], "data": [1, 2, 3, 4]}, *t[1:]], "shape"),
        (lambda t: [*t, t[0]], "twice"),
    ],
)
def test_v2_bad_tensors_name_the_input(cfg, change, needle):
    req = oip.InferRequest.model_validate({"inputs": change(_tensors())})
    with pytest.raises(oip.OipError, match=needle):
        oip.request_rows(req, cfg)


def test_v2_rows_are_limited_like_predict(cfg):
    n = cfg.serve.max_instances + 1
    req = oip.InferRequest.model_validate({"inputs": _tensors(n)})
    with pytest.raises(oip.OipError, match=f"1 <= n <= {cfg.serve.max_instances}"):
        oip.request_rows(req, cfg)


def _binary_body(tensors: list[dict]) -> tuple[bytes, str]:
    """A request as Triton's client sends it by default: JSON header, then each tensor's bytes."""
    import json
    import struct

    import numpy as np

    inputs, chunks = [], []
    for t in tensors:
        if t["datatype"] == "BYTES":
            raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in t["data"])
        else:
            dtype = {"INT64": "<i8", "FP32": "<f4", "FP64": "<f8"}[t["datatype"]]
            raw = np.asarray(t["data"], dtype=dtype).ravel().tobytes()
        meta = {k: v for k, v in t.items() if k != "data"}
        inputs.append({**meta, "parameters": {"binary_data_size": len(raw)}})
        chunks.append(raw)
    head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return head + b"".join(chunks), str(len(head))


def test_binary_tensors_decode_to_the_same_rows_as_json(cfg):
    body, header_length = _binary_body(_tensors(3))
    req = oip.parse_request(body, header_length)
    assert oip.wants_binary(req)
    json_req = oip.InferRequest.model_validate({"inputs": _tensors(3)})
    assert oip.request_rows(req, cfg) == oip.request_rows(json_req, cfg)


@pytest.mark.parametrize(
    ("mangle", "needle"),
    [
        (lambda body, n: (body[:-3], n), "exceeds"),
        (lambda body, n: (body + b"xx", n), "belong to no input"),
        (lambda body, n: (body, "999999"), "not a length"),
        (lambda body, n: (b"{not json", None), "not JSON"),
    ],
)
def test_bad_binary_bodies_name_the_problem(mangle, needle):
    body, header_length = mangle(*_binary_body(_tensors(2)))
    with pytest.raises(oip.OipError, match=needle):
        oip.parse_request(body, header_length)


def test_binary_response_carries_the_outputs_behind_the_header():
    import json

    import numpy as np

    resp = {
        "model_name": "m",
        "model_version": "1",
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [2], "data": [0.25, 0.75]},
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 1]},
        ],
    }
    body, n = oip.binary_response(resp)
    head = json.loads(body[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sizes == [8, 16] and "data" not in head["outputs"][0]
    assert np.frombuffer(body[n : n + 8], "<f4").tolist() == [0.25, 0.75]
    assert np.frombuffer(body[n + 8 :], "<i8").tolist() == [0, 1]
