"""Outcome producers' tokens: kept as digests, rotated with an overlap, revoked at once, and
read by a running replica whenever the file changes."""

from __future__ import annotations

import json
import threading

import pytest

from app.data.state import LocalState
from app.serving.producers import ProducerError, ProducerStore


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_a_token_names_its_producer_and_only_its_digest_is_stored(tmp_path):
    store = ProducerStore(LocalState(tmp_path), "producers.json")
    token = store.add("crm")
    assert store.producer_for(token) == "crm" and store.producer_for(token + "x") is None
    assert token not in (tmp_path / "producers.json").read_text()
    assert (tmp_path / "producers.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ProducerError, match="exists"):
        store.add("crm")
    with pytest.raises(ProducerError, match="lowercase"):
        store.add("CRM system")


def test_rotation_keeps_the_old_token_for_the_overlap_and_revocation_is_at_once(tmp_path):
    clock = Clock()
    state = LocalState(tmp_path)
    cli, replica = (
        ProducerStore(state, "producers.json", clock=clock),
        ProducerStore(state, "producers.json", clock=clock),
    )
    old = cli.add("billing")
    assert replica.producer_for(old) == "billing"
    new = cli.rotate("billing", overlap_s=600)
    assert replica.producer_for(old) == replica.producer_for(new) == "billing"  # re-read, no restart
    clock.now += 601
    assert replica.producer_for(old) is None and replica.producer_for(new) == "billing"
    cli.revoke("billing")
    assert replica.producer_for(new) is None
    with pytest.raises(ProducerError, match="no producer"):
        cli.rotate("billing", overlap_s=0)


def test_two_writers_at_once_lose_no_producer(tmp_path):
    state = LocalState(tmp_path)
    tokens = {}

    def add(i):
        tokens[i] = ProducerStore(state, "producers.json").add(f"p{i}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = ProducerStore(state, "producers.json")
    assert sorted(reader.producers()) == sorted(f"p{i}" for i in range(8))
    assert all(reader.producer_for(tokens[i]) == f"p{i}" for i in range(8))


def test_an_unreadable_file_keeps_the_tokens_read_before(tmp_path, caplog):
    path = tmp_path / "producers.json"
    store = ProducerStore(LocalState(tmp_path), "producers.json")
    token = store.add("crm")
    assert store.producer_for(token) == "crm"
    path.write_text(json.dumps({"producers": "garbled"}) + "  ")  # another size: read again
    assert store.producer_for(token) == "crm"
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_on_a_remote_store_a_replica_rereads_at_most_every_refresh(tmp_path):
    """An object store is read at most every `refresh_s` per replica: a revocation lands within it."""
    state = LocalState(tmp_path)
    cli, replica = ProducerStore(state, "p.json"), ProducerStore(state, "p.json", refresh_s=3600)
    token = cli.add("crm")
    assert replica.producer_for(token) == "crm"
    cli.revoke("crm")
    assert replica.producer_for(token) == "crm", "within the refresh interval: the copy read before"
    replica.refresh_s = 0
    assert replica.producer_for(token) is None
