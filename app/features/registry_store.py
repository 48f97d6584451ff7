"""Feast's registry kept in mlsys's state store, so every node reads the same one.

Feast takes a custom registry store class (`registry.registry_store_type`); this one keeps
the registry's protobuf under the key `feast/registry.db` of the state store: a file under
`storage.root` (where Feast's own file registry kept it), or an object on `storage.state`
(`s3://bucket/prefix`), so serving replicas on any node see the definitions and the
materialized intervals without a shared disk. A write names the version it replaces: when
another process changed the registry after this one read it (a concurrent `features apply`
or materialization), the write is refused with a message, never applied over theirs.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

from feast.infra.registry.registry_store import RegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

from app.config import StorageConfig
from app.data.schema import DataError
from app.data.state import LocalState, S3State, StateConflict, StateStore, state_store, where

CLASS_PATH = f"{__name__}.StateRegistryStore"
# The stores this process opened, by registry path: Feast builds the registry store from the
# path alone, and an object store's endpoint and credentials are in mlsys's config.
_opened: dict[str, tuple[StateStore, str]] = {}


def registry_path(storage: StorageConfig) -> str:
    """The registry's path in feature_store.yaml (`<state location>/feast/registry.db`), with
    this process's store for it remembered."""
    store = state_store(storage)
    path = where(store, storage.feast_registry)
    _opened[path] = (store, storage.feast_registry)
    return path


def _store_for(path: str) -> tuple[StateStore, str]:
    """The store opened for `path` and the key in it; else (the `feast` CLI in the repo folder)
    a store built from the path: a local folder, or an object store reached with the AWS
    environment."""
    if path in _opened:
        return _opened[path]
    folder, _, name = path.rpartition("/")
    return (S3State(folder, {}) if folder.startswith("s3://") else LocalState(Path(folder))), name


class StateRegistryStore(RegistryStore):
    def __init__(self, registry_config, repo_path):
        self.path = registry_config.path
        self.state, self.key = _store_for(self.path)
        self.version: str | None = None  # of the registry last read or written here

    def get_registry_proto(self) -> RegistryProto:
        stored = self.state.read(self.key)
        if stored is None:
            raise FileNotFoundError(self.path)  # Feast then creates an empty registry
        self.version = stored.version
        proto = RegistryProto()
        proto.ParseFromString(stored.data)
        return proto

    def update_registry_proto(self, registry_proto: RegistryProto) -> None:
        # As Feast's own stores do: its lookup caches are keyed on the proto's version_id.
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(datetime.now(timezone.utc))
        try:
            self.version = self.state.write(
                self.key, registry_proto.SerializeToString(), replaces=self.version
            )
        except StateConflict:
            raise DataError(
                f"the Feast registry {self.path} changed while this process updated it "
                "(another `features apply` or materialization): run again"
            ) from None

    def teardown(self) -> None:
        """Feast's `teardown`: the registry stays; mlsys never deletes shared state."""
