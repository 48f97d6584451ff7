"""`"explain": true` on /predict: each answered row carries its features' contributions, from the
model that scored it, wherever that model is placed; without it, answers are as before."""

from __future__ import annotations

import asyncio
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.model.predictor import Predictor
from app.serving.model_set import Model, ModelScores
from app.serving.routes import build_api
from app.serving.routes.deps import current_ingress
from app.serving.schemas import request_models
from tests.doubles import SERVED_ROW
from tests.helpers import make_ingress

IG_TOLERANCE = 0.05  # the MLP's integrated gradients approximate an integral (app/model/explain.py)


class ModelHandle:
    """A `Model` deployment's handle running the deployment class's own methods (pickled batch)."""

    def __init__(self, predictor):
        deployment = Model.func_or_class.__new__(Model.func_or_class)

        async def current():
            return predictor

        deployment._predictor = current
        self.score = SimpleNamespace(remote=lambda batch: deployment.score(pickle.loads(pickle.dumps(batch))))
        self.explain = SimpleNamespace(
            remote=lambda batch: deployment.explain(pickle.loads(pickle.dumps(batch)))
        )


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_predict_with_explain_answers_contributions_that_add_up_to_the_score(replica):
    api = build_api(replica.cfg)
    api.dependency_overrides[current_ingress] = lambda: replica.ingress
    client = TestClient(api)
    instances = [{"features": SERVED_ROW, "key": f"k{i}"} for i in range(6)] + [{"entity_id": 1}]
    plain = client.post("/predict", json={"instances": instances})
    assert plain.status_code == 200 and all("explanation" not in p for p in plain.json()["predictions"])
    explained = client.post("/predict", json={"instances": instances, "explain": True})
    assert explained.status_code == 200, explained.text
    features = (
        replica.bundles["champion"].preprocessor.numeric
        + replica.bundles["champion"].preprocessor.categorical
    )
    for p in explained.json()["predictions"]:
        e = p["explanation"]
        assert set(e["contributions"]) == set(features)
        assert e["base"] + sum(e["contributions"].values()) == pytest.approx(
            logit(p["score"]), abs=IG_TOLERANCE
        )
    single = request_models(replica.cfg).PredictRequest.model_validate(
        {"features": SERVED_ROW, "explain": True}
    )
    assert single.rows()[0].explain  # a single row asks too (it joins the replica's Serve batch)
    assert client.post("/predict", json={"features": SERVED_ROW, "explain": "yes"}).status_code == 422


def test_a_model_deployment_explains_with_the_model_that_scored(replica):
    handles = {alias: ModelHandle(Predictor.from_bundle(b)) for alias, b in replica.bundles.items()}
    pipeline = make_ingress(replica.cfg, handles=handles).pipeline
    rows = (
        request_models(replica.cfg)
        .PredictRequest.model_validate(
            {"instances": [{"features": SERVED_ROW, "key": f"k{i}"} for i in range(8)], "explain": True}
        )
        .rows()
    )
    answers = asyncio.run(pipeline.score(rows))
    assert {a.variant for a in answers} == {"champion", "challenger"}  # both variants explained
    for a in answers:
        expected = Predictor.from_bundle(replica.bundles[a.variant]).explain(
            {k: np.array([v]) for k, v in a.features.items()}
        )
        assert a.explanation["contributions"] == pytest.approx(expected.row(0)["contributions"], abs=1e-6)
    assert isinstance(asyncio.run(handles["champion"].score.remote(_batch(answers))), ModelScores)


def _batch(answers):
    from app.serving.model_set import FeatureBatch

    return FeatureBatch({k: np.array([a.features[k] for a in answers]) for k in answers[0].features})


def test_v2_with_parameters_explain_answers_base_and_contributions(replica):
    api = build_api(replica.cfg)
    api.dependency_overrides[current_ingress] = lambda: replica.ingress
    client = TestClient(api)
    cfg = replica.cfg
    inputs = [
        {
            "name": c,
            "shape": [3],
            "datatype": "FP64" if c in cfg.dataset.numeric else "BYTES",
            "data": [SERVED_ROW[c]] * 3,
        }
        for c in cfg.dataset.features
    ]
    url = f"/v2/models/{cfg.registry.model_name}/infer"
    body = {"inputs": inputs, "parameters": {"explain": True, "key": "k1"}}
    outputs = {o["name"]: o for o in client.post(url, json=body).json()["outputs"]}
    assert set(outputs) == {"score", "label", "base", "contributions"}
    features = outputs["contributions"]["parameters"]["features"].split(",")
    assert outputs["contributions"]["shape"] == [3, len(features)]
    rows = np.reshape(outputs["contributions"]["data"], (3, len(features)))
    totals = np.array(outputs["base"]["data"]) + rows.sum(axis=1)
    np.testing.assert_allclose(totals, [logit(p) for p in outputs["score"]["data"]], atol=IG_TOLERANCE)
    only = {**body, "outputs": [{"name": "contributions"}]}
    assert [o["name"] for o in client.post(url, json=only).json()["outputs"]] == ["contributions"]
    bad = client.post(url, json={**body, "parameters": {"explain": "yes"}})
    assert bad.status_code == 400 and "parameters.explain" in bad.text
    unasked = client.post(url, json={**only, "parameters": {}})
    assert unasked.status_code == 400 and "need parameters.explain" in unasked.text


def test_explaining_more_rows_than_serve_max_explain_rows_is_a_4xx(replica):
    api = build_api(replica.cfg)
    api.dependency_overrides[current_ingress] = lambda: replica.ingress
    client = TestClient(api)
    limit = replica.cfg.serve.max_explain_rows
    many = [{"features": SERVED_ROW, "key": f"k{i}"} for i in range(limit + 1)]
    refused = client.post("/predict", json={"instances": many, "explain": True})
    assert refused.status_code == 422 and "serve.max_explain_rows" in refused.text
    assert client.post("/predict", json={"instances": many}).status_code == 200  # scoring them is fine
    cfg = replica.cfg
    inputs = [
        {
            "name": c,
            "shape": [limit + 1],
            "datatype": "FP64" if c in cfg.dataset.numeric else "BYTES",
            "data": [SERVED_ROW[c]] * (limit + 1),
        }
        for c in cfg.dataset.features
    ]
    url = f"/v2/models/{cfg.registry.model_name}/infer"
    v2 = client.post(url, json={"inputs": inputs, "parameters": {"explain": True}})
    assert v2.status_code == 400 and "serve.max_explain_rows" in v2.text
