"""Feast's registry in the state store: what one node writes another reads, and a write over a
registry that changed since it was read is refused. (Feast's apply starts its Ray engine: these
run in the shared Ray session.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from app.data.schema import DataError
from app.features.repo import definitions, import_feast
from app.features.store import FeatureClient
from tests.configs import make_config

import_feast()
from app.features import registry_store  # noqa: E402
from app.features.registry_store import StateRegistryStore, registry_path  # noqa: E402

pytestmark = pytest.mark.integration


def _applied(cfg) -> FeatureClient:
    client = FeatureClient(cfg)
    client.store.apply(definitions(cfg, client.spec, view=client.view_name, service=client.service_name))
    return client


def test_a_second_node_reads_the_definitions_and_intervals_the_first_wrote(state_storage, tmp_path):
    """Two roots (two nodes' disks) and one state store: on S3 the second node sees what the
    first applied and materialized; on a local root the same root does."""
    here = make_config(tmp_path / "here", storage=state_storage)
    client = _applied(here)
    before = client.registry_version()
    end = datetime(2026, 12, 1, tzinfo=timezone.utc)
    view = client.store.get_feature_view(client.view_name)
    client.store.registry.apply_materialization(view, client.store.project, end - timedelta(days=1), end)
    assert client.registry_version() not in ("", before), "replicas follow this version"
    there = make_config(tmp_path / ("there" if state_storage else "here"), storage=state_storage)
    other = FeatureClient(there)
    assert other.store.get_feature_view(other.view_name).most_recent_end_time == end
    assert other.store.get_feature_service(other.service_name).name == client.service_name
    if state_storage:
        assert not (tmp_path / "here" / "store" / "feast" / "registry.db").exists()


def test_a_write_over_a_registry_changed_since_it_was_read_is_refused(tmp_path):
    cfg = make_config(tmp_path)
    _applied(cfg)
    config = SimpleNamespace(path=registry_path(cfg.storage))
    first, second = StateRegistryStore(config, None), StateRegistryStore(config, None)
    proto, theirs = first.get_registry_proto(), second.get_registry_proto()
    theirs.registry_schema_version = "theirs"
    second.update_registry_proto(theirs)
    proto.registry_schema_version = "mine"
    with pytest.raises(DataError, match="changed while this process updated it"):
        first.update_registry_proto(proto)
    assert StateRegistryStore(config, None).get_registry_proto().registry_schema_version == "theirs"


def test_feasts_own_cli_opens_a_local_registry_from_its_path_alone(tmp_path, monkeypatch):
    """`feast` run in the repo folder builds the store from feature_store.yaml's path (in a
    process that never opened it through mlsys)."""
    cfg = make_config(tmp_path)
    _applied(cfg)
    monkeypatch.setattr(registry_store, "_opened", {})
    path = str(cfg.storage.path("feast", "registry.db"))
    fresh = StateRegistryStore(SimpleNamespace(path=path), None)
    assert any(v.spec.name for v in fresh.get_registry_proto().feature_views)
