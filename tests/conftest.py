"""Shared fixtures: the project's config pointed at a temporary storage root (tests/configs.py),
and one real S3 server (SeaweedFS) that every test needing one shares."""

from __future__ import annotations

import pytest

from app.config import AppConfig
from tests.configs import make_config


@pytest.fixture
def cfg(tmp_path) -> AppConfig:
    return make_config(tmp_path)


STATE_BUCKET = "state"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server with a bucket for shared state, started on first use (tests add the
    other buckets they need)."""
    from tests.objectstore import start_object_store

    server = start_object_store(tmp_path_factory.mktemp("seaweedfs-state"))
    try:
        server.create_bucket(STATE_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def state_storage(request, tmp_path) -> dict:
    """`storage` config keys for the shared state: under the root, or on the S3 server."""
    if request.param == "local":
        return {}
    server = request.getfixturevalue("s3_server")
    return {"state": f"s3://{STATE_BUCKET}/{tmp_path.name}", "catalog": server.catalog()}
