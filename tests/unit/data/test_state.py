"""The shared state store, on local files and on a real S3 server (SeaweedFS): a write over a
stale version is refused, concurrent read-change-write loops lose nothing, and the first
creator of a key wins."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.data.schema import DataError
from app.data.state import LocalState, StateConflict, create_once, state_store, update
from tests.configs import make_config
from tests.helpers import free_port
from tests.objectstore import SECRET_KEY

WRITERS, INCREMENTS = 4, 15


@pytest.fixture
def store(state_storage, tmp_path):
    return state_store(make_config(tmp_path, storage=state_storage).storage)


def test_a_write_over_a_stale_version_is_refused_and_changes_nothing(store):
    assert store.read("a/b.json") is None
    first = store.write("a/b.json", b"1", replaces=None)
    with pytest.raises(StateConflict):
        store.write("a/b.json", b"other", replaces=None)  # it exists now
    second = store.write("a/b.json", b"2", replaces=first)
    with pytest.raises(StateConflict):
        store.write("a/b.json", b"3", replaces=first)  # written over since
    assert store.read("a/b.json").data == b"2"
    assert store.read("a/b.json").version == second


def test_concurrent_updates_lose_nothing(store):
    def add_one(data: bytes | None) -> bytes:
        return json.dumps(1 + (json.loads(data) if data else 0)).encode()

    def writer(_):
        for _ in range(INCREMENTS):
            update(store, "counter", add_one, attempts=WRITERS * INCREMENTS)

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))
    assert json.loads(store.read("counter").data) == WRITERS * INCREMENTS


def test_the_first_creator_wins(store):
    with ThreadPoolExecutor(WRITERS) as pool:
        made = list(
            pool.map(lambda i: create_once(store, "key", lambda: f"node-{i}".encode()), range(WRITERS))
        )
    assert len(set(made)) == 1
    assert store.read("key").data == made[0]


def test_an_unreachable_store_is_one_clear_error(tmp_path):
    cfg = make_config(
        tmp_path,
        storage={"state": "s3://state/x", "catalog": {"s3.endpoint": f"http://127.0.0.1:{free_port()}"}},
    )
    with pytest.raises(DataError, match=r"the state store s3://state/x is not usable"):
        state_store(cfg.storage).read("anything")


@pytest.mark.parametrize(
    ("state", "secret"), [("s3://no-such-bucket/x", SECRET_KEY), ("s3://state/x", "wrong-secret")]
)
def test_a_missing_bucket_or_wrong_credentials_are_one_clear_error_and_write_nothing(
    s3_server, tmp_path, state, secret
):
    cfg = make_config(tmp_path, storage={"state": state, "catalog": s3_server.catalog(secret=secret)})
    store = state_store(cfg.storage)
    for call in (lambda: store.read("k"), lambda: store.write("k", b"1", replaces=None)):
        with pytest.raises(DataError, match=rf"the state store {state} is not usable: \S"):
            call()
    assert "state/x/k" not in s3_server.objects("state")


def test_local_state_files_are_private(tmp_path):
    LocalState(tmp_path).write("serving/feedback.key", b"k" * 32, replaces=None)
    assert (tmp_path / "serving" / "feedback.key").stat().st_mode & 0o077 == 0
