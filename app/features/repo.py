"""The Feast repo generated from the config: `feature_store.yaml`'s content and the definitions
(entity, source, feature view with the TTL, versioned feature service), and the settings
that keep a Redis online store's reads bounded."""

from __future__ import annotations

import warnings
from datetime import timedelta

from app.config import AppConfig
from app.data.shared_files import shared_files
from app.features.transforms import FEATURE_TIMESTAMP, FeatureSpec


def import_feast() -> None:
    """Import Feast with the process's warning filters put back afterwards.

    Feast's modules call `warnings.simplefilter("once", DeprecationWarning)` when first
    imported: ahead of every other filter, it would show every library's deprecation warnings
    again (SQLAlchemy's, through MLflow) on a terminal that `--verbose` alone should open.
    """
    with warnings.catch_warnings():
        import feast  # noqa: F401


def repo_config(cfg: AppConfig) -> dict:
    """feature_store.yaml's content: the registry in the state store, Ray offline store and
    engine, sqlite or redis online."""
    import_feast()
    from app.features import registry_store

    repo = cfg.storage.feast
    online = cfg.features.online
    online_store = (
        {"type": "sqlite", "path": str(repo / "online.db")}
        if online.type == "sqlite"
        else {"type": "redis", "connection_string": _bounded_redis(online.connection_string)}
    )
    return {
        "project": cfg.features.project,
        "provider": "local",
        "registry": {
            "registry_type": "file",
            "registry_store_type": registry_store.CLASS_PATH,
            "path": registry_store.registry_path(cfg.storage),
            "cache_ttl_seconds": 0,  # read again when its version changes (`follow_registry`)
        },
        "offline_store": {
            "type": "ray",
            "storage_path": str(repo / "ray_storage"),
            "broadcast_join_threshold_mb": cfg.features.broadcast_join_threshold_mb,
        },
        "batch_engine": {
            "type": "ray.engine",
            # sqlite takes one writer at a time; redis takes many.
            "write_concurrency": 1 if online.type == "sqlite" else 4,
        },
        "online_store": online_store,
        # Feast's Ray engine keeps the newest row per entity only within each block and lets the
        # online store's upsert settle the rest (last write wins, whatever its event time, and
        # several writers race on redis). Pulling the newest row per entity first (a global
        # group-by) makes the engine's result independent of blocks and write order.
        "materialization": {"pull_latest_features": True},
        "entity_key_serialization_version": 3,
    }


def definitions(cfg: AppConfig, spec: FeatureSpec, *, view: str, service: str) -> list:
    """The entity, the offline source, the feature view (with the TTL) and the versioned service."""
    import_feast()
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    ds = cfg.dataset
    entity = Entity(
        name=ds.entity,
        join_keys=[ds.entity],
        value_type=ValueType.INT64 if ds.entity_type == "int64" else ValueType.STRING,
    )
    source = FileSource(
        name=f"{view}_source",
        path=shared_files(cfg.storage).uri(cfg.storage.features),
        timestamp_field=ds.timestamp,
    )
    schema = (
        [Field(name=n, dtype=Float64) for n in spec.numeric]
        + [Field(name=n, dtype=Int64) for n in spec.time]
        + [Field(name=n, dtype=String) for n in spec.categorical]
        + [Field(name=FEATURE_TIMESTAMP, dtype=Int64)]
    )
    feature_view = FeatureView(
        name=view,
        entities=[entity],
        source=source,
        schema=schema,
        ttl=timedelta(days=cfg.features.ttl_days),
        online=True,
    )
    feature_service = FeatureService(
        name=service, features=[feature_view], tags={"config": cfg.fingerprint()}
    )
    return [entity, source, feature_view, feature_service]


# A serving replica reads the online store inline: a Redis that is down or unreachable must
# fail a read within a second (the request gets a 503 and the next one tries again), not block
# the replica for the OS's connect timeout. Explicit settings in the connection string win.
REDIS_TIMEOUTS = {"socket_connect_timeout": 1, "socket_timeout": 2}


def _bounded_redis(connection_string: str) -> str:
    given = {part.split("=", 1)[0] for part in connection_string.split(",") if "=" in part}
    extra = [f"{k}={v}" for k, v in REDIS_TIMEOUTS.items() if k not in given]
    return ",".join([connection_string, *extra])


def fail_fast(store) -> None:
    """No retries on a refused connection: redis-py's default retries ten times with
    exponential backoff, seconds during which every request to the replica waits."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    provider = store._get_provider()  # Feast exposes no public handle on its Redis client
    client = provider.online_store._get_client(store.config.online_store)
    client.set_retry(Retry(NoBackoff(), 0))
