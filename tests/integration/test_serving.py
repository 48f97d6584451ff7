"""The Serve application over real HTTP: A/B routing, feedback, admin, OIP v2, bad input.

One application for the module on free ports, over a real Feast online store
and a real MLflow registry holding two small models (champion and challenger).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.registry.registry import CHALLENGER, CHAMPION
from app.serving import app as serving_app
from tests.configs import make_config
from tests.helpers import ab_service, free_port

pytestmark = pytest.mark.integration
PORT, GRPC_PORT = free_port(), free_port()
TOKEN = "test-admin-token"
FEATURES = {"age": 41, "income": 52000.0, "score": 0.4, "country": "US", "gender": "F"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving")
    cfg = make_config(
        tmp,
        serve={
            "http_port": PORT,
            "grpc_port": GRPC_PORT,
            # One replica, whatever the load tests do: a second one would hold the CPU that
            # the module's other applications (placement: deployment) need on 4 logical CPUs.
            "ingress": {"min_replicas": 1, "max_replicas": 1},
            "poll_interval_s": 0.2,
            "max_body_bytes": 200_000,
            "experiment": {"name": "exp-test", "split": {"champion": 0.5, "challenger": 0.5}},
        },
    )
    with ab_service(cfg, tmp, token=TOKEN) as service:
        yield service


def post(service, path, body=None, headers=None):
    # json.dumps writes NaN/Infinity literals, as a careless client would.
    data = None if body is None else json.dumps(body)
    headers = {"content-type": "application/json", **(headers or {})}
    return requests.post(service["url"] + path, data=data, headers=headers, timeout=30)


def admin(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def test_predict_by_entity_features_and_batch(service):
    entity = service["entities"][0]
    one = post(service, "/predict", {"entity_id": entity})
    assert one.status_code == 200, one.text
    row = one.json()
    assert set(row) == {"request_id", "variant", "model_version", "score", "label", "feedback_token"}
    assert 0 <= row["score"] <= 1 and row["label"] in (0, 1) and row["variant"] in ("champion", "challenger")

    raw = post(service, "/predict", {"features": FEATURES, "key": "user-7"}).json()
    assert raw["model_version"] in (1, 2)

    batch = post(
        service,
        "/predict",
        {"instances": [{"entity_id": e} for e in service["entities"][:20]] + [{"features": FEATURES}]},
    )
    assert batch.status_code == 200
    assert len(batch.json()["predictions"]) == 21


def test_assignment_is_sticky_and_matches_the_version(service):
    seen = {}
    for entity in service["entities"][:15]:
        answers = {
            (r["variant"], r["model_version"])
            for r in (post(service, "/predict", {"entity_id": entity}).json() for _ in range(3))
        }
        assert len(answers) == 1, f"entity {entity} moved between variants: {answers}"
        seen.update(dict(answers))
    versions = {
        CHAMPION: service["registry"].alias_version(CHAMPION),
        CHALLENGER: service["registry"].alias_version(CHALLENGER),
    }
    assert all(versions[v] == ver for v, ver in seen.items())
    assert set(seen) == {"champion", "challenger"}  # a 50/50 split over 15 users uses both


def test_the_same_features_score_the_same_as_the_bundle(service):
    from app.model.predictor import Predictor
    from app.serving.scoring import raw_rows_to_frame

    got = post(service, "/predict", {"features": FEATURES, "key": "k"}).json()
    bundle = service["registry"].load(got["model_version"])
    frame = raw_rows_to_frame([FEATURES], service["cfg"])
    expected = Predictor.from_bundle(bundle).predict_proba(frame)[0]
    assert abs(got["score"] - expected) < 1e-6  # time features as of now: same hour either way


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"features": {**FEATURES, "age": "forty"}}, "features.age"),
        ({"features": {**FEATURES, "age": float("nan")}}, "features.age"),
        ({"features": {**FEATURES, "income": float("inf")}}, "features.income"),
        ({"features": {k: v for k, v in FEATURES.items() if k != "gender"}}, "features.gender"),
        ({"features": {**FEATURES, "shoe_size": 42}}, "features.shoe_size"),
        ({"entity_id": "abc"}, "entity_id"),
        ({"entity_id": 1, "features": FEATURES}, "body"),
        ({"instances": []}, "instances"),
        ({}, "body"),
        ({"entity_id": 1, "colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(service, body, field):
    resp = post(service, "/predict", body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


def test_malformed_json_unknown_entity_and_oversized_bodies(service):
    bad = requests.post(
        service["url"] + "/predict", data="{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 422 and "JSON" in bad.json()["error"]
    missing = post(service, "/predict", {"entity_id": 987654321})
    assert missing.status_code == 404 and missing.json()["field"] == "entity_id"
    huge = post(service, "/predict", {"instances": [{"features": FEATURES}] * 3000})
    assert huge.status_code == 413
    unknown_category = post(service, "/predict", {"features": {**FEATURES, "country": "Atlantis"}})
    assert unknown_category.status_code == 200  # served; the model's unknown bucket
    assert post(service, "/predict", {"entity_id": service["entities"][0]}).status_code == 200


def test_open_inference_protocol_v2_round_trip(service):
    url, name = service["url"], service["cfg"].registry.model_name
    assert requests.get(f"{url}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready").status_code == 200
    meta = requests.get(f"{url}/v2/models/{name}").json()
    assert {i["name"] for i in meta["inputs"]} == {"age", "income", "score", "country", "gender"}
    inputs = [
        {"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [[30], [61]]},
        {"name": "income", "shape": [2], "datatype": "FP32", "data": [40000.0, 90000.5]},
        {"name": "score", "shape": [2], "datatype": "FP64", "data": [0.1, 0.9]},
        {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["US", "JP"]},
        {"name": "gender", "shape": [2], "datatype": "BYTES", "data": ["F", "M"]},
    ]
    resp = requests.post(f"{url}/v2/models/{name}/infer", json={"id": "abc", "inputs": inputs})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["id"] == "abc" and out["model_name"] == name
    score = next(o for o in out["outputs"] if o["name"] == "score")
    assert score["datatype"] == "FP32" and score["shape"] == [2] and len(score["data"]) == 2
    label = next(o for o in out["outputs"] if o["name"] == "label")
    assert label["data"] == [int(s >= 0.5) for s in score["data"]]
    assert requests.post(f"{url}/v2/models/nope/infer", json={"inputs": inputs}).status_code == 404
    bad = requests.post(f"{url}/v2/models/{name}/infer", json={"inputs": inputs[:-1]})
    assert bad.status_code == 400 and "gender" in bad.json()["error"]


def test_admin_routes_need_the_token(service):
    assert post(service, "/admin/rollback").status_code == 401
    assert post(service, "/admin/rollback", headers=admin("wrong")).status_code == 403
    resp = requests.put(service["url"] + "/experiment", json={"split": {"champion": 1.0}}, headers=admin("x"))
    assert resp.status_code == 403


def test_feedback_joins_and_the_report_compares_variants(service):
    labels, receipts = {}, {}
    for entity in service["entities"]:
        row = post(service, "/predict", {"entity_id": entity}).json()
        labels[row["request_id"]], receipts[row["request_id"]] = row["label"], row["feedback_token"]
    producer = service["outcomes"]

    def feedback(rid, label, receipt, headers=producer):
        return post(
            service, "/feedback", {"request_id": rid, "label": label, "feedback_token": receipt}, headers
        )

    first = next(iter(labels))
    anonymous = feedback(first, 1 - labels[first], receipts[first], headers={})
    assert anonymous.status_code == 401, "a caller with its receipt is not an outcome producer"
    assert feedback(first, 1 - labels[first], receipts[first], headers=admin()).status_code == 403
    for rid, label in labels.items():
        ack = feedback(rid, label, receipts[rid])
        assert ack.status_code == 200 and ack.json()["status"] in ("joined", "pending")
    again = feedback(first, 1, receipts[first])
    assert again.status_code == 409, again.text  # counted once
    forged = feedback(first, 0, "1." + "0" * 32)
    assert forged.status_code == 403
    assert post(service, "/feedback", {"request_id": "x y", "label": 1}, producer).status_code == 422
    time.sleep(0.5)
    report = requests.get(service["url"] + "/experiment/report").json()
    variants = report["variants"]
    assert variants["champion"]["outcomes"] + variants["challenger"]["outcomes"] >= len(labels) - 1
    assert variants["champion"]["accuracy"] == 1.0  # feedback equal to the predicted label
    assert set(variants["champion"]["outcomes_by_producer"]) == {"tests"}, (
        "only the producer's outcomes count"
    )
    comparison = report["comparisons"]["challenger"]
    assert comparison["decision"] in ("keep running", "promote", "stop")
    assert comparison["min_sample_size"] > 0


def test_live_split_change_and_shadow(service):
    url = service["url"]
    exp = {"name": "exp-test", "split": {"champion": 1.0}, "shadow": "challenger", "shadow_fraction": 1.0}
    assert requests.put(url + "/experiment", json=exp, headers=admin()).status_code == 200
    time.sleep(0.6)  # other replicas follow within poll_interval_s
    rows = [post(service, "/predict", {"entity_id": e}).json() for e in service["entities"][:10]]
    assert {r["variant"] for r in rows} == {"champion"}  # the shadow's answer is never returned
    time.sleep(1.5)
    report = requests.get(url + "/experiment/report").json()
    shadow = report["shadow"]["challenger"]  # ... but it scored the copies, counted apart
    assert shadow["requests"] >= 10 and shadow["paired"] >= 10 and 0 <= shadow["label_agreement"] <= 1
    assert shadow["estimated"]["accuracy"] is not None  # before any outcome
    back = {"name": "exp-test", "split": {"champion": 0.5, "challenger": 0.5}}
    assert requests.put(url + "/experiment", json=back, headers=admin()).status_code == 200
    bad = requests.put(url + "/experiment", json={"split": {"champion": 0.7}}, headers=admin())
    assert bad.status_code == 422 and "split" in bad.json()["error"]


def test_promotion_under_load_fails_no_request(service):
    registry = service["registry"]
    challenger = registry.alias_version(CHALLENGER)
    stop, failures, versions = threading.Event(), [], set()

    def load(entity):
        while not stop.is_set():
            r = post(service, "/predict", {"entity_id": entity})
            if r.status_code != 200:
                failures.append(r.text)
            else:
                versions.add(r.json()["model_version"])

    with ThreadPoolExecutor(4) as pool:
        for e in service["entities"][:4]:
            pool.submit(load, e)
        time.sleep(1.0)
        resp = post(service, "/admin/promote", {}, headers=admin())
        assert resp.status_code == 200, resp.text
        assert resp.json()["models"]["champion"] == challenger
        time.sleep(1.5)
        rolled = post(service, "/admin/rollback", headers=admin())
        assert rolled.status_code == 200, rolled.text
        time.sleep(1.0)
        stop.set()
    assert failures == []
    assert challenger in versions and len(versions) >= 2  # the swap happened while load ran
    assert registry.alias_version(CHAMPION) != challenger  # rolled back


def test_model_deployments_per_variant_serve_the_same_scores(service):
    """placement: deployment: each variant in its own `model-<alias>` deployment."""
    cfg = service["cfg"]
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"placement": "deployment"})})
    url = serving_app.start(cfg, name="mlsys-deployments", route_prefix="/dep")
    try:
        body = {"features": FEATURES, "key": "same-key"}
        split_app = post(service, "/dep/predict", body).json()
        one_hop = post(service, "/predict", body).json()
        assert url.endswith("/dep") and split_app["variant"] == one_hop["variant"]
        assert split_app["model_version"] == one_hop["model_version"]
        assert abs(split_app["score"] - one_hop["score"]) < 1e-6
    finally:
        serving_app.stop("mlsys-deployments")


def test_replicas_that_can_never_be_placed_are_a_clear_error_not_a_hang(service):
    """A model deployment asking for a GPU the cluster lacks: start() names it and gives up."""
    cfg = service["cfg"]
    serve_cfg = cfg.serve.model_copy(update={"placement": "deployment", "use_gpu": True})
    try:
        with pytest.raises(serving_app.ServiceNotReady, match=r"'mlsys-gpu' is DEPLOYING.*model-champion"):
            serving_app.start(
                cfg.model_copy(update={"serve": serve_cfg}),
                name="mlsys-gpu",
                route_prefix="/gpu",
                timeout_s=15,
            )
    finally:
        serving_app.stop("mlsys-gpu")
    assert post(service, "/predict", {"features": FEATURES}).status_code == 200  # the live app is untouched


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def schema_fields(spec: dict) -> list[str]:
    """Every property name in the OpenAPI spec: fuzzed bodies use real field names."""
    names = set()

    def walk(node):
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    return sorted(names)


def test_fuzzing_every_route_of_the_openapi_spec_gives_no_5xx(service):
    url = service["url"]
    spec = requests.get(url + "/openapi.json").json()
    fields = schema_fields(spec)
    routes = [
        (path, method) for path, ops in spec["paths"].items() for method in ops if method in ("post", "put")
    ]
    assert {("/predict", "post"), ("/feedback", "post"), ("/v2/models/{name}/infer", "post")} <= set(routes)
    bodies = st.one_of(
        JSON,
        st.dictionaries(st.sampled_from(fields), JSON, max_size=6),
        st.fixed_dictionaries({"features": st.dictionaries(st.sampled_from(fields), JSON, max_size=7)}),
        st.fixed_dictionaries(
            {"instances": st.lists(st.dictionaries(st.sampled_from(fields), JSON), max_size=3)}
        ),
    )
    statuses = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(routes), body=bodies, token=st.sampled_from([None, TOKEN, "bad"]))
    def fuzz(route, body, token):
        path, method = route
        path = path.replace("{name}", service["cfg"].registry.model_name)
        headers = {"content-type": "application/json", **(admin(token) if token else {})}
        if path.startswith("/admin") or (path == "/experiment" and method == "put"):
            headers.pop("Authorization", None)  # the fuzz must not promote or move the split
        resp = requests.request(method, url + path, data=json.dumps(body), headers=headers, timeout=30)
        statuses.append(resp.status_code)
        assert resp.status_code < 500, f"{method} {path} {body!r} -> {resp.status_code} {resp.text}"
        assert resp.headers["content-type"].startswith("application/json")

    fuzz()
    assert (
        any(s >= 400 for s in statuses)
        and post(service, "/predict", {"features": FEATURES}).status_code == 200
    )


def test_request_metrics_reach_rays_metrics_endpoint(service):
    """The Prometheus names the alert rules use are exported by Ray (with the ray_ prefix)."""
    import ray

    for entity in service["entities"][:5]:
        assert post(service, "/predict", {"entity_id": entity}).status_code == 200
    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    deadline, text = time.time() + 60, ""
    while time.time() < deadline:  # Ray exports metrics every few seconds
        text = requests.get(url, timeout=10).text
        if "ray_mlsys_requests_total" in text and "ray_mlsys_request_latency_seconds_bucket" in text:
            break
        time.sleep(2)
    assert "ray_mlsys_requests_total" in text and 'variant="champion"' in text
    assert "ray_mlsys_request_latency_seconds_bucket" in text


def test_oip_v2_over_grpc_through_serves_proxy(service):
    """Triton's gRPC client, unchanged, through Serve's gRPC proxy: the same path as HTTP
    (assignment, the traffic log), status codes for bad input, and the service keeps serving."""
    import numpy as np
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    cfg = service["cfg"]
    client = triton.InferenceServerClient(f"127.0.0.1:{GRPC_PORT}")
    name = cfg.registry.model_name
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    rows = [FEATURES, {**FEATURES, "age": 70, "country": "DE"}]
    inputs = []
    for spec in client.get_model_metadata(name, as_json=True)["inputs"]:
        dtype = np.float32 if spec["datatype"] == "FP32" else np.object_
        tensor = triton.InferInput(spec["name"], [len(rows)], spec["datatype"])
        tensor.set_data_from_numpy(np.array([r[spec["name"]] for r in rows], dtype=dtype))
        inputs.append(tensor)
    for i in range(8):  # assigned as /predict assigns the same key
        key = f"grpc-client-{i}"
        result = client.infer(name, inputs, parameters={"key": key})
        scores = result.as_numpy("score")
        assert scores.shape == (2,) and np.isfinite(scores).all()
        http = post(service, "/predict", {"features": FEATURES, "key": key}).json()
        assert result.get_response(as_json=True)["model_version"] == str(http["model_version"])
        assert scores[0] == pytest.approx(http["score"], abs=1e-6)
    bad = [t for t in inputs if t.name() != "age"] + [triton.InferInput("age", [2], "BYTES")]
    bad[-1].set_data_from_numpy(np.array(["41", "70"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as err:
        client.infer(name, bad)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT" and "age" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.infer("another-model", inputs)
    assert err.value.status() == "StatusCode.NOT_FOUND"
    assert client.infer(name, inputs).as_numpy("score").shape == (2,)
