"""A live Redis online store: materialized, served by entity id, killed mid-traffic, restarted.

`redis-server` (Debian package; CI installs it) runs on a free port with append-only
persistence, so a restart brings its data back the way a production Redis would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import requests
from ray import serve

from app.features.store import FeatureClient
from app.model.predictor import Predictor
from app.registry.registry import CHAMPION, Registry
from app.serving import app as serving_app
from tests.configs import make_config
from tests.helpers import free_port, quick_bundle, served_entities

REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not REDIS and not os.environ.get("CI"), reason="redis-server not installed (CI installs it)"
    ),
]
PORT = free_port()


class RedisServer:
    def __init__(self, folder, port: int):
        self.folder, self.port, self.proc = folder, port, None

    def start(self) -> None:
        assert REDIS, "redis-server missing: .ci/run installs Debian's redis-server package"
        self.proc = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def redis_service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("redis")
    redis = RedisServer(tmp, free_port())
    redis.start()
    cfg = make_config(
        tmp / "redis-store",
        features={"online": {"type": "redis", "connection_string": f"127.0.0.1:{redis.port}"}},
        # Every request reads Redis (no replica cache): what an outage does to those reads.
        serve={
            "http_port": PORT,
            "experiment": {"name": "exp-redis", "split": {"champion": 1.0}},
            "online_cache_seconds": 0,
        },
    )
    entities, clean = served_entities(cfg, tmp)
    bundle = quick_bundle(cfg, clean, seed=1)
    Registry(cfg).register(bundle, params={}, alias=CHAMPION)
    # The same data through a sqlite online store: what Redis must agree with.
    sqlite_cfg = make_config(tmp / "sqlite-store")
    served_entities(sqlite_cfg, tmp)
    try:
        url = serving_app.start(cfg)
        # The first read opens the Feast store in the replica (seconds on a loaded machine).
        assert predict(url, entities[0], timeout=180).status_code == 200
        yield {
            "url": url,
            "cfg": cfg,
            "sqlite": sqlite_cfg,
            "entities": entities,
            "bundle": bundle,
            "redis": redis,
        }
    finally:
        serve.shutdown()
        if redis.proc.poll() is None:
            redis.kill()


def predict(url, entity, timeout=15) -> requests.Response:
    return requests.post(f"{url}/predict", json={"entity_id": entity}, timeout=timeout)


def test_scores_from_redis_equal_those_from_sqlite(redis_service):
    s = redis_service
    entities = s["entities"][:20]
    from_sqlite = pd.DataFrame.from_records(FeatureClient(s["sqlite"]).online(entities))
    expected = Predictor.from_bundle(s["bundle"]).predict_proba(from_sqlite)
    served = [predict(s["url"], e).json()["score"] for e in entities]
    np.testing.assert_allclose(served, expected, rtol=1e-6)


def test_redis_down_is_503s_and_the_service_recovers_without_a_restart(redis_service):
    s = redis_service
    entities = s["entities"]
    statuses: list[tuple[str, int]] = []
    phase = {"now": "up"}
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            began = phase["now"]
            try:
                code = predict(s["url"], entities[i % len(entities)]).status_code
            except requests.RequestException:  # a hang past the timeout counts as a failure
                code = -1
            # A request that spans a kill or a restart belongs to neither side of it.
            statuses.append((began if phase["now"] == began else "changing", code))
            i += 1

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    time.sleep(2)
    phase["now"] = "killing"
    s["redis"].kill()
    phase["now"] = "down"
    time.sleep(4)
    phase["now"] = "restarting"
    s["redis"].start()
    phase["now"] = "back"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(p == "back" and c == 200 for p, c in statuses[-5:]):
        time.sleep(0.5)
    time.sleep(2)
    stop.set()
    thread.join(timeout=30)
    by_phase = {p: Counter(c for q, c in statuses if q == p) for p in ("up", "down", "back")}
    assert set(by_phase["up"]) == {200}, by_phase
    assert by_phase["down"][503] > 0 and set(by_phase["down"]) == {503}, by_phase
    assert by_phase["back"][200] > 0 and set(by_phase["back"]) <= {200, 503}, by_phase
    assert -1 not in {c for _, c in statuses}, "a request hung past its timeout"
    assert statuses[-1] == ("back", 200), by_phase
