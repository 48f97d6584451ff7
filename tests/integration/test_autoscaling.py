"""Serve autoscaling under real load: a second replica is added while callers keep a replica
busy, removed once they stop, and no request fails on the way up or down.

The applications run over a real Feast online store and MLflow registry, behind the documented
HAProxy proxy, with autoscaling delays of seconds instead of Serve's defaults (30 s up, 10 min
down) so the whole cycle fits a test. The callers use a plain HTTP session without retries:
every failed request counts, whatever the reason.
"""

from __future__ import annotations

import time

import pytest
from ray import serve

from app.registry.registry import CHALLENGER, CHAMPION, Registry
from app.serving import app as serving_app
from tests.configs import make_config
from tests.helpers import PredictLoad as Load
from tests.helpers import free_port, quick_bundle, served_entities

pytestmark = pytest.mark.integration
# Low enough that a dozen callers on two busy cores keep one replica over it; Serve averages
# ongoing requests over the look-back window, which must exceed its 10 s metrics interval.
FAST = {"upscale_delay_s": 1, "downscale_delay_s": 3, "look_back_period_s": 12, "target_ongoing_requests": 2}
CALLERS = 12
DEADLINE_S = 240  # the replica's start (model loading, Feast) on two cores shared with others
PORT = free_port()  # Serve's HTTP proxy listens on one port for every application


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Online features and a champion and challenger in the registry, shared by the apps."""
    tmp = tmp_path_factory.mktemp("autoscaling")
    cfg = make_config(tmp)
    entities, clean = served_entities(cfg, tmp)
    registry = Registry(cfg)
    registry.register(quick_bundle(cfg, clean, seed=1), params={}, alias=CHAMPION)
    registry.register(quick_bundle(cfg, clean, seed=2), params={}, alias=CHALLENGER)
    yield {"tmp": tmp, "entities": entities}
    serve.shutdown()


def serving(store, name: str, **serve_section):
    """Start application `name` on its own prefix; returns its URL."""
    cfg = make_config(
        store["tmp"],
        ray={"num_cpus": 4, "include_dashboard": False},
        serve={
            "http_port": PORT,
            "admin_auth": False,
            "experiment": {"name": f"exp-{name}", "split": {"champion": 1.0, "challenger": 0.0}},
            **serve_section,
        },
    )
    return serving_app.start(cfg, name=name, route_prefix=f"/{name}", timeout_s=DEADLINE_S)


def running(app: str, deployment: str) -> int:
    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    states = status.deployments[deployment].replica_states
    return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


def wait_for(what: str, check, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s ({serve.status().applications})")


def test_the_ingress_scales_out_under_load_and_back_in_after_it_without_a_failed_request(store):
    name = "scaling"
    url = serving(store, name, ingress={"min_replicas": 1, "max_replicas": 2, **FAST})
    try:
        assert running(name, "ingress") == 1
        # One caller throughout: requests in flight while the replica is added and removed.
        with Load(url, store["entities"], 1) as trickle:
            with Load(url, store["entities"], CALLERS) as busy:
                wait_for("a second ingress replica", lambda: running(name, "ingress") == 2)
            wait_for("back to one ingress replica", lambda: running(name, "ingress") == 1)
            time.sleep(2)  # requests after the removal, too
        counts = busy.counts + trickle.counts
        assert busy.counts["ok"] > 0 and trickle.counts["ok"] > 0, counts
        assert counts["failed"] == 0, (counts, (busy.failures + trickle.failures)[:5])
    finally:
        serve.delete(name)


def test_model_deployments_scale_on_their_own_load_not_the_ingresss(store):
    """placement: deployment: the champion's model deployment gets a second replica under load
    while the ingress (fixed at one) and the idle challenger's deployment keep theirs."""
    name = "models"
    url = serving(
        store,
        name,
        placement="deployment",
        ingress={"min_replicas": 1, "max_replicas": 1},
        # An ingress replica sends a model one batch at a time, between its feature lookups: a
        # busy model deployment has less than one request in flight per ingress replica.
        models={"min_replicas": 1, "max_replicas": 2, **FAST, "target_ongoing_requests": 0.1},
    )
    try:
        with Load(url, store["entities"], CALLERS) as busy:
            wait_for("a second champion model replica", lambda: running(name, "model-champion") == 2)
            assert running(name, "model-challenger") == 1 and running(name, "ingress") == 1
        wait_for("back to one champion model replica", lambda: running(name, "model-champion") == 1)
        assert busy.counts["ok"] > 0 and busy.counts["failed"] == 0, (busy.counts, busy.failures[:5])
    finally:
        serve.delete(name)
