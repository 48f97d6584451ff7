"""The registry against a real MLflow tracking server (`mlflow server`, a SQL backend, artifacts
served by the server, kept on its disk or on a real S3 server): what a cluster without a shared
disk runs. The client's storage root
gets no registry files; the versions, aliases and bundles live on the server."""

from __future__ import annotations

import pytest

from app.data.synthetic import Defects, generate
from app.registry.registry import CHALLENGER, CHAMPION, Registry
from tests.configs import make_config
from tests.helpers import quick_bundle
from tests.objectstore import start_tracking_server

ARTIFACTS_BUCKET = "mlflow"

CLEAN = Defects(0, 0, 0, 0, 0, 0)


@pytest.fixture(scope="module", params=["disk", "s3"])
def tracking_server(request, tmp_path_factory):
    """The server, its artifacts on its own disk or on a real S3 server (SeaweedFS); yields its
    URL and a function listing the bundles it stores."""
    store = request.getfixturevalue("s3_server") if request.param == "s3" else None  # tests/conftest.py
    server = start_tracking_server(tmp_path_factory.mktemp("mlflow-server"), store, ARTIFACTS_BUCKET)
    yield server.url, server.bundles
    server.stop()


def test_versions_aliases_and_bundles_live_on_the_server_not_on_the_clients_disk(tracking_server, tmp_path):
    url, bundles = tracking_server
    cfg = make_config(tmp_path / "node-a", registry={"tracking_uri": url})
    frame = generate(1500, seed=1, defects=CLEAN)
    registry = Registry(cfg)
    first = registry.register(quick_bundle(cfg, frame, seed=1), params={"a": 1}, alias=CHAMPION)
    second = registry.register(quick_bundle(cfg, frame, seed=2), params={"a": 2}, alias=CHALLENGER)
    assert (first, second) == (1, 2)
    assert len(bundles()) == 2, bundles()  # the server keeps both bundles (on its disk, or on S3)
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
