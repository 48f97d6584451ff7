"""The ingress replica without HTTP and without Ray: its class, called directly.

The monitor and the online store are in-process doubles answering like Ray actor handles
(`.method.remote(...)` returns an awaitable); the control actor's class and the registry are
real (an MLflow store holding two small models), so routing, scoring, shadow and promotion run
the real code (the `replica` fixture, tests/unit/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from types import SimpleNamespace

import hypothesis.strategies as st
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.data.state import state_store
from app.model.predictor import Predictor
from app.registry.registry import CHALLENGER, CHAMPION
from app.serving import receipts
from app.serving.app import ingress_deployment
from app.serving.auth import AuthError
from app.serving.ingress import Ingress
from app.serving.model_set import ModelScores
from app.serving.routes import build_api
from app.serving.routes.deps import current_ingress
from app.serving.schemas import request_models
from app.serving.scoring import Answer, RowError, ScoringFailed, raw_rows_to_frame
from tests.doubles import SERVED_ROW, OnlineStoreDouble
from tests.helpers import ADMIN_TOKEN, free_port, make_ingress, producer_token

FLOAT32_SCORE_TOLERANCE = 1e-6
ROW = SERVED_ROW


def rows(cfg, items: list[dict]) -> list:
    """The rows of one /predict request with these instances."""
    return request_models(cfg).PredictRequest.model_validate({"instances": items}).rows()


def json_tensors(cfg, *, rows: int) -> list[dict]:
    """v2 JSON input tensors: one per feature, `rows` copies of ROW."""
    return [
        {
            "name": c,
            "shape": [rows],
            "datatype": "FP64" if c in cfg.dataset.numeric else "BYTES",
            "data": [ROW[c]] * rows,
        }
        for c in cfg.dataset.features
    ]


def challenger_fails_on_age_13(ingress, monkeypatch) -> None:
    """The replica's challenger raises on any batch holding a row aged 13."""
    predictor = ingress.routing.current.predictors[CHALLENGER]
    predict_proba = predictor.predict_proba

    def fails_on_age_13(cols):
        if (np.asarray(cols["age"]) == 13).any():
            raise RuntimeError("the model cannot score age 13")
        return predict_proba(cols)

    monkeypatch.setattr(predictor, "predict_proba", fails_on_age_13)


def run(coro):
    return asyncio.run(coro)


def test_the_serve_deployment_wraps_this_class(replica):
    assert issubclass(ingress_deployment(replica.cfg).func_or_class, Ingress)


def test_a_batch_scores_each_row_with_its_variants_model_and_logs_every_answer(replica):
    cfg, ingress = replica.cfg, replica.ingress
    items = [{"features": {**ROW, "age": 20 + i}, "key": f"user-{i}"} for i in range(40)]
    answers = run(ingress.predict(rows(cfg, items), batch=True))
    assert {a["variant"] for a in answers} == {CHAMPION, CHALLENGER}
    frame = raw_rows_to_frame([it["features"] for it in items], cfg)
    for variant, version in ((CHAMPION, 1), (CHALLENGER, 2)):
        idx = [i for i, a in enumerate(answers) if a["variant"] == variant]
        expected = Predictor.from_bundle(replica.bundles[variant]).predict_proba(frame.iloc[idx])
        np.testing.assert_allclose([answers[i]["score"] for i in idx], expected, rtol=1e-6)
        assert {answers[i]["model_version"] for i in idx} == {version}
    assert all(a["label"] == int(a["score"] >= cfg.serve.threshold) for a in answers)
    ingress.shipper.pump()
    logged = replica.monitor.records
    assert sorted(r["request_id"] for r in logged) == sorted(a["request_id"] for a in answers)
    assert {r["experiment"] for r in logged} == {"exp-unit"}


def test_assignment_is_sticky_per_key(replica):
    # (A single request joins Serve's batch queue, which exists only inside a replica: the
    # integration tests cover that path.)
    cfg, ingress = replica.cfg, replica.ingress

    async def twice():
        one = await ingress.predict(rows(cfg, [{"features": ROW, "key": "alice"}]), batch=True)
        two = await ingress.predict(rows(cfg, [{"features": ROW, "key": "alice"}]), batch=True)
        return one[0], two[0]

    first, second = run(twice())
    assert first["variant"] == second["variant"] and first["score"] == second["score"]
    assert first["request_id"] != second["request_id"]


def test_an_unknown_entity_is_a_404_row_error_and_known_ones_score(replica):
    cfg, ingress = replica.cfg, replica.ingress
    answers = run(ingress.predict(rows(cfg, [{"entity_id": 1}, {"entity_id": 2}]), batch=True))
    assert [a["model_version"] in (1, 2) for a in answers] == [True, True]
    with pytest.raises(RowError) as err:
        run(ingress.predict(rows(cfg, [{"entity_id": 1}, {"entity_id": 999}]), batch=True))
    assert err.value.status == 404 and "999" in str(err.value)


class ModelHandle:
    """A `Model` deployment's handle: the batch crosses a process boundary (pickled)."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.score = SimpleNamespace(remote=self._score)

    async def _score(self, batch):
        batch = pickle.loads(pickle.dumps(batch))
        return ModelScores(self.predictor.version, self.predictor.predict_proba(batch.columns))


@pytest.mark.parametrize("placement", ["ingress", "deployment"])
def test_a_row_scores_the_same_whatever_else_is_in_its_batch(replica, placement):
    """An unknown entity (every feature missing) or a raw-features row in the same batch must
    not change how the others are coded: in a DataFrame, one missing hour turned the batch's
    integer hours into floats ("3.0"), which the vocabulary ("3") did not know."""
    cfg = replica.cfg
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"unknown_entity": "impute"})})
    handles = None
    if placement == "deployment":
        handles = {alias: ModelHandle(Predictor.from_bundle(b)) for alias, b in replica.bundles.items()}
    pipeline = make_ingress(cfg, handles=handles).pipeline
    alone = run(pipeline.score(rows(cfg, [{"entity_id": 1}])))[0]
    mixed = run(pipeline.score(rows(cfg, [{"entity_id": 999}, {"features": ROW}, {"entity_id": 1}])))
    assert mixed[2].variant == alone.variant
    # The net computes in float32, and a batch of three may be summed in another order than a
    # batch of one (the BLAS kernel depends on the shape): the same row can differ by an ulp
    # (~3e-8 here). A mis-coded feature moves a score by orders of magnitude more.
    assert mixed[2].score == pytest.approx(alone.score, abs=FLOAT32_SCORE_TOLERANCE)
    assert mixed[2].features == alone.features
    expected = Predictor.from_bundle(replica.bundles[alone.variant]).predict_proba(
        raw_rows_to_frame([ROW], cfg)
    )[0]
    if mixed[1].variant == alone.variant:
        assert mixed[1].score == pytest.approx(expected, abs=FLOAT32_SCORE_TOLERANCE)


def test_cached_online_rows_are_served_until_a_materialization_changes_the_registry(replica):
    cfg, ingress = replica.cfg, replica.ingress
    store = ingress.features.client
    before = run(ingress.pipeline.score(rows(cfg, [{"entity_id": 1}])))[0]
    store.rows[1] = {**store.rows[1], "income": store.rows[1]["income"] * 5}
    cached = run(ingress.pipeline.score(rows(cfg, [{"entity_id": 1}])))[0]
    assert cached.features == before.features, "within the TTL the replica's row is used"
    store.version += 1  # what `features materialize` does to the registry file
    run(ingress.follow())
    assert store.followed == store.version, "the replica reads the new registry (definitions too)"
    after = run(ingress.pipeline.score(rows(cfg, [{"entity_id": 1}])))[0]
    assert after.features["income"] == store.rows[1]["income"] != before.features["income"]


def test_a_new_split_and_a_promotion_change_routing_at_once(replica):
    cfg, ingress = replica.cfg, replica.ingress
    exp = cfg.serve.experiment.model_copy(update={"split": {"champion": 0.0, "challenger": 1.0}})
    view = run(ingress.admin.set_experiment(exp))
    assert view["effective_split"] == {CHALLENGER: 1.0}
    items = [{"features": ROW, "key": f"k{i}"} for i in range(10)]
    assert {a["variant"] for a in run(ingress.predict(rows(cfg, items), batch=True))} == {CHALLENGER}
    after = run(ingress.admin.promote(None))
    assert after["models"] == {CHAMPION: 2}
    assert replica.registry.alias_version(CHAMPION) == 2
    # Every share is on the challenger alias, which now names no model: the control answers
    # (the promoted model), not a 503 for every request.
    answers = run(ingress.predict(rows(cfg, items), batch=True))
    assert {(a["variant"], a["model_version"]) for a in answers} == {(CHAMPION, 2)}
    run(ingress.admin.set_experiment(cfg.serve.experiment))
    answers = run(ingress.predict(rows(cfg, items), batch=True))
    assert {(a["variant"], a["model_version"]) for a in answers} == {(CHAMPION, 2)}


def test_admin_calls_need_the_token(replica):
    ingress = replica.ingress
    for header, status in ((None, 401), ("Basic x", 401), ("Bearer wrong", 403)):
        with pytest.raises(AuthError) as err:
            ingress.admin.check(header)
        assert err.value.status == status
    ingress.admin.check(f"Bearer {ADMIN_TOKEN}")


def test_v2_infer_scores_with_the_model_it_was_assigned(replica):
    from app.serving.oip import InferRequest

    cfg, ingress = replica.cfg, replica.ingress
    inputs = json_tensors(cfg, rows=2)
    out = run(ingress.v2_infer(cfg.registry.model_name, InferRequest.model_validate({"inputs": inputs})))
    scores = next(o for o in out["outputs"] if o["name"] == "score")["data"]
    bundle = replica.bundles[CHAMPION if out["model_version"] == "1" else CHALLENGER]
    expected = Predictor.from_bundle(bundle).predict_proba(raw_rows_to_frame([ROW, ROW], cfg))
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_the_routers_map_errors_to_4xx_bodies(replica):
    """The HTTP face over the same object, in-process (FastAPI's test client, no Serve)."""
    api = build_api(replica.cfg)
    api.dependency_overrides[current_ingress] = lambda: replica.ingress
    client = TestClient(api)
    unknown = client.post("/predict", json={"instances": [{"entity_id": 999}]})
    assert unknown.status_code == 404 and unknown.json()["field"] == "entity_id"
    known = client.post("/predict", json={"instances": [{"entity_id": 1}]})
    assert known.status_code == 200 and len(known.json()["predictions"]) == 1
    assert client.post("/predict", json={"entity_id": "one"}).status_code == 422
    assert client.post("/admin/promote").status_code == 401
    assert (
        client.post("/admin/rollback", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 409
    )
    one = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [41]}]}
    assert client.post("/v2/models/nope/infer", json=one).status_code == 404
    answer = known.json()["predictions"][0]
    rid, receipt = answer["request_id"], answer["feedback_token"]
    body = {"request_id": rid, "label": 1, "feedback_token": receipt}
    crm = {"Authorization": f"Bearer {producer_token(replica.cfg, 'crm')}"}
    ok = client.post("/feedback", json=body, headers=crm)
    assert ok.json() == {"request_id": rid, "status": "joined"}
    assert replica.monitor.feedback_seen == [(rid, 1, "crm")], "the outcome names its producer"


def test_feedback_needs_the_receipt_of_its_prediction_and_counts_once(replica):
    cfg, ingress = replica.cfg, replica.ingress
    api = build_api(cfg)
    api.dependency_overrides[current_ingress] = lambda: ingress
    client = TestClient(api)
    first, second = client.post("/predict", json={"instances": [{"entity_id": 1}, {"entity_id": 2}]}).json()[
        "predictions"
    ]

    producer = {"Authorization": f"Bearer {producer_token(cfg)}"}

    def feedback(rid, receipt, label=1):
        body = {"request_id": rid, "label": label, "feedback_token": receipt}
        return client.post("/feedback", json=body, headers=producer)

    missing = client.post("/feedback", json={"request_id": first["request_id"], "label": 1}, headers=producer)
    assert missing.status_code == 403 and "missing" in missing.json()["error"]
    swapped = feedback(first["request_id"], second["feedback_token"])  # another prediction's receipt
    assert swapped.status_code == 403 and "does not belong" in swapped.json()["error"]
    invented = feedback("0123456789abcdef", "1767225600." + "0" * 32)
    assert invented.status_code == 403
    assert feedback(first["request_id"], "²." + "0" * 32).status_code == 422  # not a receipt's shape
    assert feedback(first["request_id"], first["feedback_token"]).status_code == 200
    again = feedback(first["request_id"], first["feedback_token"], label=0)
    assert again.status_code == 409 and "already recorded" in again.json()["error"]
    assert replica.monitor.feedback_seen == [(first["request_id"], 1, "tests")]  # nothing else stored

    key = ingress.outcomes.key
    old = receipts.issue(key, "forgotten-id", now=time.time() - 3600)  # ours, no longer remembered
    assert feedback("forgotten-id", old).json()["status"] == "recorded"  # for training, not the A/B count
    ancient = receipts.issue(key, "ancient-id", now=time.time() - (cfg.monitor.retention_days + 1) * 86400)
    assert feedback("ancient-id", ancient).status_code == 404
    fresh = receipts.issue(key, "in-flight-id")  # its prediction may still be on its way
    assert feedback("in-flight-id", fresh).json()["status"] == "joined"
    assert receipts.load_key(state_store(cfg.storage), cfg.storage.feedback_key) == key  # every replica's


def test_only_a_current_producers_token_reports_outcomes_and_rotation_needs_no_restart(replica):
    """A caller who got a prediction, or the admin, cannot report its outcome; a producer can,
    with its current token, and a rotated or revoked token stops working in the running replica."""
    from app.serving.producers import producer_store

    cfg, ingress = replica.cfg, replica.ingress
    api = build_api(cfg)
    api.dependency_overrides[current_ingress] = lambda: ingress
    client = TestClient(api)
    answers = client.post("/predict", json={"instances": [{"entity_id": 1}] * 4}).json()["predictions"]
    store = producer_store(cfg)
    old = store.add("billing")

    def feedback(answer, token):
        body = {"request_id": answer["request_id"], "label": 1, "feedback_token": answer["feedback_token"]}
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return client.post("/feedback", json=body, headers=headers)

    assert feedback(answers[0], None).status_code == 401  # the receipt alone is no credential
    assert feedback(answers[0], ADMIN_TOKEN).status_code == 403  # admin is not an outcomes scope
    assert feedback(answers[0], "mlsys-out-made-up").status_code == 403
    assert feedback(answers[0], old).status_code == 200
    new = store.rotate("billing", overlap_s=3600)
    assert feedback(answers[1], old).status_code == 200, "the old token works during the overlap"
    assert feedback(answers[2], new).status_code == 200
    store.rotate("billing", overlap_s=0)
    assert feedback(answers[3], new).status_code == 403, "rotated out: refused without a restart"
    store.revoke("billing")
    assert all(producer == "billing" for _, _, producer in replica.monitor.feedback_seen)
    assert len(replica.monitor.feedback_seen) == 3


class FailingFeatures(OnlineStoreDouble):
    """An online store that is down."""

    def online_columns(self, ids):
        raise ConnectionError("online store down")


def test_an_unavailable_online_store_is_a_503_for_entity_rows_only(replica):
    cfg = replica.cfg
    pipeline = make_ingress(cfg, features=FailingFeatures(cfg)).pipeline
    got = run(pipeline.score(rows(cfg, [{"entity_id": 1}, {"features": ROW}])))
    assert isinstance(got[0], RowError) and got[0].status == 503
    assert isinstance(got[1], Answer) and np.isfinite(got[1].score)


class Metrics:
    """The replica's metrics, as calls received."""

    def __init__(self):
        self.served_by, self.failed_by = [], []

    def served(self, variant, version, seconds):
        self.served_by.append(variant)

    def failed(self, variant):
        self.failed_by.append(variant)


def test_a_row_its_model_fails_on_fails_alone_and_counts_as_that_variants_error(replica, monkeypatch):
    """The rest of the batch is answered; the failure is the variant's in the metrics and in the
    traffic log (where the rollout's error guardrail reads it), never "unknown"."""
    cfg, ingress, monitor = replica.cfg, replica.ingress, replica.monitor
    challenger_fails_on_age_13(ingress, monkeypatch)
    ingress.pipeline.metrics = metrics = Metrics()
    items = [{"features": {**ROW, "age": 13 if i % 2 else 30}, "key": f"user-{i}"} for i in range(40)]
    got = run(ingress.pipeline.score(rows(cfg, items)))
    failed = [g for g in got if isinstance(g, ScoringFailed)]
    answered = [g for g in got if isinstance(g, Answer)]
    assert failed and len(failed) + len(answered) == len(items)
    assert {f.variant for f in failed} == {CHALLENGER} and all(f.status == 500 for f in failed)
    assert all(np.isfinite(a.score) for a in answered)
    assert metrics.failed_by == [CHALLENGER] * len(failed)
    ingress.shipper.pump()
    errors = [r for r in monitor.records if r["status"] == "error"]
    assert len(errors) == len(failed) and {r["variant"] for r in errors} == {CHALLENGER}
    assert len([r for r in monitor.records if r["status"] == "ok"]) == len(answered)
    with pytest.raises(RowError) as err:  # over HTTP: a 500 naming the variant
        run(ingress.predict(rows(cfg, [items[1]]), batch=True))
    assert err.value.status == 500 and CHALLENGER in str(err.value)


def test_v2_goes_through_the_same_path_assignment_and_traffic_log_included(replica):
    from app.serving.oip import InferRequest

    cfg, ingress, monitor = replica.cfg, replica.ingress, replica.monitor
    inputs = json_tensors(cfg, rows=3)
    versions = set()
    for i in range(16):
        body = InferRequest.model_validate({"inputs": inputs, "parameters": {"key": f"client-{i}"}})
        versions.add(run(ingress.v2_infer(cfg.registry.model_name, body))["model_version"])
    assert versions == {"1", "2"}, "the split assigns v2 requests too"
    ingress.shipper.pump()
    assert len(monitor.records) == 16 * 3
    by_request = {}
    for r in monitor.records:
        by_request.setdefault(r["key"], set()).add(r["variant"])
    assert all(len(v) == 1 for v in by_request.values()), "one request's rows share one variant"


def test_a_model_that_cannot_load_is_skipped_and_its_share_served_by_the_others(replica):
    cfg = replica.cfg
    # The replica loads from its downloaded copy of the registry's bundle.
    (cfg.storage.bundles / "v2" / "bundle" / "weights.pt").write_bytes(b"tampered")
    fresh = make_ingress(cfg)
    models = fresh.routing.models
    assert fresh.routing.current.split == {CHAMPION: 1.0} and models.unloadable == {CHALLENGER: 2}
    items = [{"features": ROW, "key": f"k{i}"} for i in range(20)]
    assert {a["variant"] for a in run(fresh.predict(rows(cfg, items), batch=True))} == {CHAMPION}
    # Not retried while the alias still names the broken version.
    assert not models.changed([CHAMPION, CHALLENGER], models.generation)


def test_a_silent_monitor_is_a_503_not_a_hang(replica, monkeypatch):
    from app.serving import actors

    class Silent:
        def feedback(self, request_id, label, may_wait, *, producer):
            return asyncio.sleep(3600)

    monkeypatch.setattr(actors, "MONITOR_TIMEOUT_S", 0.2)
    ingress = replica.ingress
    silent = Silent()
    ingress.outcomes.monitor = type(
        "M", (), {"feedback": type("F", (), {"remote": staticmethod(silent.feedback)})()}
    )()
    api = build_api(replica.cfg)
    api.dependency_overrides[current_ingress] = lambda: ingress
    receipt = receipts.issue(ingress.outcomes.key, "abc")
    answer = TestClient(api).post(
        "/feedback",
        json={"request_id": "abc", "label": 1, "feedback_token": receipt},
        headers={"Authorization": f"Bearer {producer_token(replica.cfg)}"},
    )
    assert answer.status_code == 503 and "did not answer" in answer.json()["error"]


def test_v2_takes_json_without_a_content_type_and_binary_tensors(replica):
    # (Two rows: a single row joins Serve's batch queue, which exists only inside a replica;
    # the integration tests cover that path.)
    cfg, ingress = replica.cfg, replica.ingress
    run(ingress.admin.set_experiment(cfg.serve.experiment.model_copy(update={"split": {"champion": 1.0}})))
    api = build_api(cfg)
    api.dependency_overrides[current_ingress] = lambda: ingress
    client = TestClient(api)
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    inputs = json_tensors(cfg, rows=2)
    url = f"/v2/models/{cfg.registry.model_name}/infer"
    plain = client.post(url, content=json.dumps({"inputs": inputs}).encode(), headers={"content-type": ""})
    assert plain.status_code == 200, plain.text
    score = next(o for o in plain.json()["outputs"] if o["name"] == "score")["data"][0]
    expected = Predictor.from_bundle(replica.bundles[CHAMPION]).predict_proba(raw_rows_to_frame([ROW], cfg))[
        0
    ]
    assert score == pytest.approx(expected, rel=1e-5)
    huge = [{**t, "data": [10**400, 1]} if t["name"] == "age" else t for t in inputs]
    bad = client.post(url, json={"inputs": huge})
    assert bad.status_code == 400 and "age" in bad.json()["error"]


def test_the_triton_http_client_works_unchanged_binary_and_json(replica):
    """Triton's own client, built only from the model metadata, against the routers on a real
    HTTP server (uvicorn; Serve adds nothing to the protocol): its default binary tensors and
    JSON tensors, a string feature among them."""
    import threading
    import time

    import tritonclient.http as triton
    import uvicorn

    cfg, ingress = replica.cfg, replica.ingress
    run(ingress.admin.set_experiment(cfg.serve.experiment.model_copy(update={"split": {"champion": 1.0}})))
    api = build_api(cfg)
    api.dependency_overrides[current_ingress] = lambda: ingress
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        name = cfg.registry.model_name
        assert client.is_server_live() and client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        rows_ = [ROW, {**ROW, "age": 70, "country": "DE"}]
        expected = Predictor.from_bundle(replica.bundles[CHAMPION]).predict_proba(
            raw_rows_to_frame(rows_, cfg)
        )
        for binary in (True, False):
            inputs = []
            for spec in meta["inputs"]:
                values = [r[spec["name"]] for r in rows_]
                dtype = np.float32 if spec["datatype"] == "FP32" else np.object_
                tensor = triton.InferInput(spec["name"], [len(rows_)], spec["datatype"])
                tensor.set_data_from_numpy(np.array(values, dtype=dtype), binary_data=binary)
                inputs.append(tensor)
            result = client.infer(name, inputs)
            np.testing.assert_allclose(result.as_numpy("score"), expected, rtol=1e-4)
            assert result.as_numpy("label").tolist() == [int(s >= cfg.serve.threshold) for s in expected]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_restarting_monitor_is_a_503_at_once():
    """Ray fails a call to a restarting actor at once: that is a 503 to retry, not a 500."""
    from ray.exceptions import ActorUnavailableError

    from app.serving import actors

    async def restarting():
        raise ActorUnavailableError("The actor is restarting", None)

    with pytest.raises(actors.MonitorUnavailable, match="restarting"):
        run(actors.within(restarting()))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _tensor(cfg):
    """A v2 input tensor that may be right, or wrong in its name, shape, type or data."""
    names = st.sampled_from([*cfg.dataset.features, "nope"])
    return st.fixed_dictionaries(
        {
            "name": names,
            "shape": st.lists(st.integers(-2, 4), max_size=3),
            "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "FP99"]),
        },
        optional={"data": JSON, "parameters": JSON},
    )


def test_malformed_v2_and_predict_requests_get_4xx_never_a_500(replica):
    """Generated bodies and headers: any mix of wrong shapes, types, sizes, nesting and
    lengths is refused with a 4xx (or answered), and the service keeps answering."""
    from hypothesis import HealthCheck, given, settings

    cfg, ingress = replica.cfg, replica.ingress
    api = build_api(cfg)
    api.dependency_overrides[current_ingress] = lambda: ingress
    client = TestClient(api, raise_server_exceptions=False)
    url = f"/v2/models/{cfg.registry.model_name}/infer"
    bodies = st.one_of(
        JSON.map(lambda v: json.dumps(v).encode()),
        st.lists(_tensor(cfg), min_size=1, max_size=3).map(lambda t: json.dumps({"inputs": t}).encode()),
        st.binary(max_size=64),
        st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    )
    printable = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
    lengths = st.none() | st.text(printable, max_size=6) | st.integers(-5, 100).map(str)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, length=lengths, route=st.sampled_from([url, "/predict"]))
    def check(body, length, route):
        headers = {"content-type": "application/json"}
        if length is not None:  # HTTP headers are latin-1: "²" reaches the server as "²"
            headers["Inference-Header-Content-Length"] = length.encode("latin-1", errors="replace")
        answer = client.post(route, content=body, headers=headers)
        assert answer.status_code < 500, (route, body[:200], length, answer.text[:200])

    check()
    # A server decodes headers as latin-1, so byte 0xB2 arrives as "²", which str.isdigit
    # accepts and int() refuses (the test client sends only UTF-8 headers: asked directly).
    from app.serving import oip

    with pytest.raises(oip.OipError, match="not a length"):
        oip.parse_request(b"{}", "²")
    assert client.get("/healthz").status_code == 200


def test_a_request_counts_once_in_the_latency_sample_however_many_rows_it_holds(replica):
    """A client's 500-row batch is one request: one latency in the log (and in the monitor's
    sample), not 500 copies of one slow number that could move a latency guardrail."""
    from app.monitoring.counts import ExperimentCounts

    cfg, ingress, monitor = replica.cfg, replica.ingress, replica.monitor
    big = [{"features": {**ROW, "age": 20 + i % 50}, "key": "one-client"} for i in range(500)]
    started = time.perf_counter()
    run(ingress.predict(rows(cfg, big), batch=True))
    elapsed_ms = (time.perf_counter() - started) * 1000
    run(ingress.predict(rows(cfg, [{"features": ROW, "key": "another"}]), batch=True))
    ingress.shipper.pump()
    assert len(monitor.records) == 501
    timed = [r for r in monitor.records if r["latency_ms"] is not None]
    assert len(timed) == 2, "one latency per request"
    # ... and it is the request's time per row: a bigger batch does not make its variant slower.
    assert timed[0]["latency_ms"] <= elapsed_ms / 500
    counts = ExperimentCounts()
    for r in monitor.records:
        counts.add_prediction(r)
    sample = sum(len(s.latency_ms) for s in counts.stats.values())
    requests = sum(s.requests for s in counts.stats.values())
    assert (sample, requests) == (2, 501)


def test_a_batch_its_challenger_fails_on_some_rows_counts_once_as_a_failed_request(replica, monkeypatch):
    """A 60-row request whose challenger fails on a third of its rows is one request that
    reached each variant and one that the challenger failed: the error guardrail's rate is per
    request, as the caller saw it, not per row (the log still holds every failed row)."""
    from app.monitoring.counts import ExperimentCounts

    cfg, ingress, monitor = replica.cfg, replica.ingress, replica.monitor
    challenger_fails_on_age_13(ingress, monkeypatch)
    items = [{"features": {**ROW, "age": 13 if i % 3 == 2 else 30}, "key": f"user-{i}"} for i in range(60)]
    got = run(ingress.pipeline.score(rows(cfg, items)))
    assert sum(isinstance(g, ScoringFailed) for g in got) > 1, "several rows failed"
    run(ingress.pipeline.score(rows(cfg, [{"features": ROW, "key": f"user-{i}"} for i in range(20)])))
    ingress.shipper.pump()
    errors = [r for r in monitor.records if r["status"] == "error"]
    marked = [r for r in errors if r["latency_ms"] is not None]
    assert len(errors) > 1 and len(marked) == 1, "the first failed row carries the request's mark"
    counts = ExperimentCounts()
    for r in monitor.records:
        counts.add_prediction(r)
    report = counts.report(cfg.serve.experiment)
    challenger, champion = report.variants[CHALLENGER], report.variants[CHAMPION]
    assert (challenger.requests_reached, challenger.requests_failed) == (2, 1)
    assert challenger.error_rate == 0.5 and challenger.errors == len(errors)
    assert (champion.requests_reached, champion.requests_failed, champion.error_rate) == (2, 0, 0.0)
