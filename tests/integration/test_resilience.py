"""Serve replicas killed under load: requests keep succeeding and the replica comes back.

Its own application on port 8129 with two ingress replicas (each scores in-process, the
default placement), over a real Feast online store and MLflow registry.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import ray

from app.registry.registry import CHALLENGER, CHAMPION
from app.serving import app as serving_app
from app.serving.client import ServiceClient, ServiceError
from tests.configs import make_config
from tests.helpers import ab_service, free_port

pytestmark = pytest.mark.integration
PORT = free_port()
TOKEN = "resilience-token"
SERVE_NAMESPACE = "serve"  # where Serve names its replica actors


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resilience")
    cfg = make_config(
        tmp,
        serve={
            "http_port": PORT,
            "poll_interval_s": 0.2,
            "ingress": {"min_replicas": 2, "max_replicas": 2},
            "experiment": {"name": "exp-resilience", "split": {"champion": 0.5, "challenger": 0.5}},
        },
    )
    with ab_service(cfg, tmp, token=TOKEN) as service:
        yield service


def replicas(deployment: str) -> set[str]:
    names = ray.util.list_named_actors(all_namespaces=True)
    return {
        a["name"]
        for a in names
        if a["name"].startswith(f"SERVE_REPLICA::{serving_app.APP_NAME}#{deployment}#")
    }


def kill_one(deployment: str) -> str:
    victim = sorted(replicas(deployment))[0]
    # no_restart: a crash Ray cannot undo; Serve's controller must notice and replace it.
    ray.kill(ray.get_actor(victim, namespace=SERVE_NAMESPACE), no_restart=True)
    return victim


def wait_replaced(deployment: str, victim: str, count: int, timeout_s: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = replicas(deployment)
        if len(alive) >= count and victim not in alive:
            return alive
        time.sleep(0.25)
    raise AssertionError(f"{deployment}: {victim} not replaced in {timeout_s} s ({replicas(deployment)})")


class Load:
    """Four callers predicting in a loop through the service client, counting outcomes."""

    def __init__(self, url: str, entities: list[int]):
        self.url, self.entities = url, entities[:4]
        self.stop = threading.Event()
        self.outcomes: Counter = Counter()
        self.errors: list[str] = []
        self.versions: Counter = Counter()

    def _run(self, entity: int) -> None:
        client = ServiceClient(self.url)
        while not self.stop.is_set():
            try:
                version = client.predict_entity(entity)["model_version"]
                self.outcomes["ok"] += 1
                self.versions[version] += 1
            except (ServiceError, OSError) as exc:
                self.outcomes["failed"] += 1
                self.errors.append(str(exc)[:300])

    def __enter__(self):
        self.pool = ThreadPoolExecutor(len(self.entities))
        for e in self.entities:
            self.pool.submit(self._run, e)
        deadline = time.monotonic() + 60
        while self.outcomes["ok"] < 50 and time.monotonic() < deadline:  # warmed up
            time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.pool.shutdown(wait=True)

    def success_rate(self) -> float:
        return self.outcomes["ok"] / max(1, self.outcomes["ok"] + self.outcomes["failed"])


def test_a_killed_replica_under_load_fails_no_more_than_one_in_a_thousand_and_comes_back(service):
    with Load(service["url"], service["entities"]) as load:
        time.sleep(2.0)
        before = load.outcomes["ok"]
        victim = kill_one("ingress")
        alive = wait_replaced("ingress", victim, count=2)
        time.sleep(3.0)
    assert load.outcomes["ok"] > before > 0, load.outcomes  # load ran before and after the kill
    assert load.success_rate() >= 0.999, (load.outcomes, load.errors[:3])
    assert len(alive) == 2 and victim not in alive


def test_a_replica_killed_during_promotion_comes_back_serving_the_promoted_model(service):
    registry = service["registry"]
    challenger = registry.alias_version(CHALLENGER)
    client = ServiceClient(service["url"])
    with Load(service["url"], service["entities"]) as load:
        time.sleep(1.0)
        promoted = client.session.post(
            service["url"] + "/admin/promote", json={}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        victim = kill_one("ingress")
        wait_replaced("ingress", victim, count=2)
        time.sleep(3.0)
    assert load.success_rate() >= 0.999, (load.outcomes, load.errors[:3])
    assert promoted.status_code == 200, promoted.text
    assert registry.alias_version(CHAMPION) == challenger  # the persisted promotion survived
    assert load.versions[challenger] > 0  # served under load before and after the kill
    # The challenger alias is gone with the promotion, so every replica, the new one included,
    # now answers every request with the promoted model.
    served = {client.predict_entity(e)["model_version"] for e in service["entities"][:40]}
    assert served == {challenger}
