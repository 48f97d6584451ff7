"""The registry against a real MLflow tracking server (`mlflow server`, a SQL backend, artifacts
served by the server): what a cluster without a shared disk runs. The client's storage root
gets no registry files; the versions, aliases and bundles live on the server."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from app.data.synthetic import Defects, generate
from app.registry.registry import CHALLENGER, CHAMPION, Registry
from tests.configs import make_config
from tests.helpers import free_port, quick_bundle

CLEAN = Defects(0, 0, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", (root / "artifacts").as_uri(),
            "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("mlflow server did not answer /health within 120 s")
    yield url, root
    server.terminate()
    server.wait(timeout=30)


def test_versions_aliases_and_bundles_live_on_the_server_not_on_the_clients_disk(tracking_server, tmp_path):
    url, server_root = tracking_server
    cfg = make_config(tmp_path / "node-a", registry={"tracking_uri": url})
    frame = generate(1500, seed=1, defects=CLEAN)
    registry = Registry(cfg)
    first = registry.register(quick_bundle(cfg, frame, seed=1), params={"a": 1}, alias=CHAMPION)
    second = registry.register(quick_bundle(cfg, frame, seed=2), params={"a": 2}, alias=CHALLENGER)
    assert (first, second) == (1, 2)
    stored = [p.name for p in (server_root / "artifacts").rglob("bundle.json")]
    assert len(stored) == 2, stored  # the server keeps both bundles
    client_root = cfg.storage.path()
    assert not (client_root / "mlflow.db").exists() and not (client_root / "mlartifacts").exists()
    # Another node, with its own empty disk, finds the same versions and loads the champion.
    other = Registry(make_config(tmp_path / "node-b", registry={"tracking_uri": url}))
    assert other.alias_version(CHAMPION) == 1 and other.alias_version(CHALLENGER) == 2
    loaded = other.load(CHAMPION)
    assert loaded.features == registry.load(CHAMPION).features
    other.promote(2, reason="a test")
    assert registry.alias_version(CHAMPION) == 2
    assert [e.event for e in registry.promotion_ledger()][-1] == "promote"
