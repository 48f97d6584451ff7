"""FeatureClient: the project's one door to Feast (offline table, definitions, online store).

The Feast repo is generated from the config under `<storage>/feast/`: `feature_store.yaml`
with Feast's Ray offline store and Ray compute engine and a sqlite (or redis) online store,
plus an entity, one FeatureView with the configured TTL and a versioned FeatureService.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import yaml

from app.cluster.connection import connect
from app.cluster.tasks import read_parquet, run_tasks
from app.config import AppConfig
from app.data import tables, warehouse
from app.data.schema import DataError
from app.data.shared_files import SharedFiles, shared_files
from app.data.state import state_store
from app.features.latest import latest_rows
from app.features.pit import apply_ttl, asof_join, partitioned_asof_join
from app.features.repo import definitions, fail_fast, import_feast, repo_config
from app.features.transforms import FEATURE_TIMESTAMP, feature_spec, feature_table_batch, utc_us
from app.files import atomic_write_text

log = logging.getLogger(__name__)
PARTITION_BYTES = 64 << 20  # per join task in the partitioned path
MAX_BUCKETS = 1000  # pyarrow writes at most 1024 partitions from one block
FEATURE_FILE = "part-0.parquet"  # one per day
SOURCE_KEY = "mlsys.warehouse-files"


class FeatureClient:
    def __init__(self, cfg: AppConfig):
        self.cfg = cfg
        self.spec = feature_spec(cfg)
        self.repo = cfg.storage.feast
        self.files = shared_files(cfg.storage)
        self.table = self.files.uri(cfg.storage.features)  # Feast's offline source: one file a day
        self.view_name = f"{cfg.dataset.entity}_features"
        self.service_name = f"model_v{cfg.features.service_version}"

    # ------------------------------------------------------------ offline feature table

    def build_table(self) -> int:
        """Compute features for the warehouse's days whose data files changed since their
        features were built; returns how many days were rebuilt."""
        days = warehouse.day_files(warehouse.open_table(self.cfg, create=False))
        if not days:
            raise warehouse.empty(self.cfg)
        self.files.check()
        stale = self.files.map(lambda day: _stale(self.files, self._day_file(day), days[day]), days)
        changed = {day: files for (day, files), redo in zip(days.items(), stale, strict=True) if redo}
        if changed:
            connect(self.cfg.ray)
            run_tasks(
                build_partition,
                [(files, self._day_file(day), self.cfg) for day, files in changed.items()],
            )
        return len(changed)

    def _day_file(self, day: str) -> str:
        return f"{self.table}/date={day}/{FEATURE_FILE}"

    def feature_files(self) -> list[str]:
        return self.files.parquet_files(self.table)

    def table_bytes(self) -> int:
        """Uncompressed size of the feature table, the measure Feast's join threshold uses."""
        footers = self.files.footers(self.feature_files())
        return sum(md.row_group(i).total_byte_size for md in footers for i in range(md.num_row_groups))

    @cached_property
    def store(self):
        import_feast()
        from feast import FeatureStore, RepoConfig

        self.repo.mkdir(parents=True, exist_ok=True)
        config = repo_config(self.cfg)
        atomic_write_text(self.repo / "feature_store.yaml", yaml.safe_dump(config, sort_keys=False))
        store = FeatureStore(config=RepoConfig(repo_path=self.repo, **config))
        if self.cfg.features.online.type == "redis":
            fail_fast(store)
        return store

    def apply(self) -> int:
        """Build the feature table and register the definitions; returns partitions rebuilt."""
        rebuilt = self.build_table()
        self.store.apply(definitions(self.cfg, self.spec, view=self.view_name, service=self.service_name))
        return rebuilt

    def materialize(self, end: datetime | None = None) -> tuple[datetime, datetime] | None:
        """Load new offline rows into the online store (incremental after the first run).

        Returns the (start, end) window loaded, or None when there was nothing new.
        """
        end = end or datetime.now(timezone.utc)
        oldest, newest = self._timestamp_bounds()
        view = self.store.get_feature_view(self.view_name)
        # First run: everything in the table (the engine still drops rows older than the TTL).
        start = view.most_recent_end_time or oldest - timedelta(seconds=1)
        if newest <= start:
            # Feast's Ray engine crashes on an empty window (schema of an empty dataset).
            return None
        if self.cfg.features.materialize_engine == "feast":
            connect(self.cfg.ray)
            self.store.materialize(start_date=start, end_date=end, feature_views=[self.view_name])
        else:
            self._write_latest(view, start, end)
        return start, end

    def _write_latest(self, view, start: datetime, end: datetime) -> None:
        """Feast's materialization by other means: the newest row per entity in the window
        (and within the TTL of now, as Feast's engine keeps it) through Feast's online-write
        API, then the interval recorded in the registry as `FeatureStore.materialize` does."""
        ds = self.cfg.dataset
        since = max(start, datetime.now(timezone.utc) - timedelta(days=self.cfg.features.ttl_days))
        files = [self.files.path(f) for f in self.feature_files()]
        rows = latest_rows(
            files, entity=ds.entity, timestamp=ds.timestamp, start=since, end=end, filesystem=self.files.fs
        )
        if not rows.empty:
            self.store.write_to_online_store(self.view_name, rows)
        self.store.registry.apply_materialization(view, self.store.project, start, end)

    def _timestamp_bounds(self) -> tuple[datetime, datetime]:
        """Oldest and newest feature-row time, from parquet statistics (no data read)."""
        ts, lows, highs = self.cfg.dataset.timestamp, [], []
        for md in self.files.footers(self.feature_files()):
            col = md.schema.names.index(ts)
            for i in range(md.num_row_groups):
                stats = md.row_group(i).column(col).statistics
                if stats is not None and stats.has_min_max:
                    lows.append(stats.min)
                    highs.append(stats.max)
        if not lows:
            raise DataError("the feature table is empty: run `mlsys features apply` first")

        def utc(v):
            return pd.Timestamp(v).tz_convert("UTC").to_pydatetime()

        return utc(min(lows)), utc(max(highs))

    # ------------------------------------------------------------ retrieval

    def historical(self, entity_df: pd.DataFrame) -> ray.data.Dataset:
        """Point-in-time-correct features for each (entity, timestamp) row of `entity_df`.

        Every input row comes back once, with its other columns, in input order; features are
        missing where the entity had no row at or before that time within the TTL.
        """
        ds = self.cfg.dataset
        missing = [c for c in (ds.entity, ds.timestamp) if c not in entity_df.columns]
        if missing:
            raise DataError(f"entity_df is missing column(s) {missing}")
        connect(self.cfg.ray)
        entity_df = entity_df.copy()
        entity_df[ds.timestamp] = utc_us(entity_df[ds.timestamp])
        entity_df[ds.entity] = self._entity_keys(entity_df[ds.entity])
        keys = entity_df[[ds.entity, ds.timestamp]].drop_duplicates().reset_index(drop=True)
        names = self.spec.names
        ttl = pd.Timedelta(days=self.cfg.features.ttl_days)
        size = self.table_bytes()
        if self.cfg.features.historical_engine == "feast":
            if size > self.cfg.features.broadcast_join_threshold_mb << 20:
                raise DataError(
                    f"the feature table ({size >> 20} MB) is above broadcast_join_threshold_mb, "
                    "where Feast's windowed join misses history; use historical_engine: mlsys"
                )
            joined = apply_ttl(self._feast_join(keys), ds.timestamp, names, ttl)
        elif size < PARTITION_BYTES:
            # One bucket: the same join in this process, without a Ray task's fixed costs
            # (writing both sides to a scratch dataset, scheduling, reading back).
            # File by file: a partition whose column is all null has a null-typed schema,
            # which one dataset read would impose on (or fail to cast from) the others.
            parts = self.files.map(
                lambda f: self.files.read_table(f).to_pandas(ignore_metadata=True), self.feature_files()
            )
            table = pd.concat(parts, ignore_index=True)
            joined = asof_join(keys, table, key=ds.entity, ts=ds.timestamp, features=names, ttl=ttl)
        else:
            feature_ds = read_parquet(
                self.files.path(self.table), filesystem=self.files.fs, partitioning=None
            )
            joined = partitioned_asof_join(
                keys,
                feature_ds,
                key=ds.entity,
                ts=ds.timestamp,
                features=names,
                ttl=ttl,
                buckets=min(MAX_BUCKETS, max(1, size // PARTITION_BYTES)),
                files=self.files,
                scratch=self.cfg.storage.staging,
            )
        joined = joined[[ds.entity, ds.timestamp, *names, FEATURE_TIMESTAMP]]
        joined[ds.timestamp] = utc_us(joined[ds.timestamp])
        joined[ds.entity] = self._entity_keys(joined[ds.entity])
        result = entity_df.merge(joined, on=[ds.entity, ds.timestamp], how="left", validate="m:1")
        return ray.data.from_pandas(result)

    def _entity_keys(self, ids: pd.Series) -> pd.Series:
        """Entity ids in the configured type, numpy-backed, so both join sides agree."""
        if self.cfg.dataset.entity_type == "int64":
            try:
                return ids.astype("int64")
            except (TypeError, ValueError):
                raise DataError(f"entity ids in {self.cfg.dataset.entity!r} must be integers") from None
        return ids.astype(str).astype(object)

    def _feast_join(self, keys: pd.DataFrame) -> pd.DataFrame:
        ts = self.cfg.dataset.timestamp
        # Feast's Ray store expects the entity time in `event_timestamp`.
        entity_df = keys.rename(columns={ts: "event_timestamp"})
        service = self.store.get_feature_service(self.service_name)
        job = self.store.get_historical_features(entity_df=entity_df, features=service)
        out = job.to_df()
        if ts != "event_timestamp":
            out = out.drop(columns=[ts], errors="ignore").rename(columns={"event_timestamp": ts})
        return out

    def registry_version(self) -> str:
        """Changes whenever the Feast registry is written (a materialization records its
        interval there): what replicas watch to drop cached online rows."""
        stored = self._state.read(self.cfg.storage.feast_registry)
        return "" if stored is None else stored.version

    @cached_property
    def _state(self):  # one client for the polls: an S3 client costs tens of milliseconds to make
        return state_store(self.cfg.storage)

    def follow_registry(self) -> None:
        """Read the Feast registry again (new definitions, new intervals): Feast keeps the
        one it read until told."""
        self.store.refresh_registry()
        self.__dict__.pop("_service", None)  # the feature service as the new registry has it

    @cached_property
    def _service(self):
        return self.store.get_feature_service(self.service_name)

    def online(self, entity_ids: list) -> list[dict]:
        """Latest feature values per entity from the online store (None where unknown)."""
        cols = self.online_columns(entity_ids)
        return [{k: cols[k][i] for k in cols} for i in range(len(entity_ids))]

    def online_columns(self, entity_ids: list) -> dict[str, list]:
        """The same, as columns (one list per feature and the entity key) as Feast returns
        them: what the serving path reads, once per batch."""
        ent = self.cfg.dataset.entity
        resp = self.store.get_online_features(
            features=self._service, entity_rows=[{ent: e} for e in entity_ids]
        )
        return resp.to_dict()


def build_partition(warehouse_files: list[str], out_file: str, cfg: AppConfig) -> int:
    """Features of one warehouse day, written whole (`SharedFiles.write_parquet`). The file
    names the warehouse files it was computed from (schema metadata): how staleness is seen."""
    fs, paths = tables.file_system(tables.catalog_properties(cfg.storage), warehouse_files)
    batch = pq.read_table(paths, filesystem=fs).to_pandas(ignore_metadata=True)
    table = pa.Table.from_pandas(feature_table_batch(batch, cfg), preserve_index=False)
    table = table.replace_schema_metadata({SOURCE_KEY: json.dumps(_names(warehouse_files))})
    shared_files(cfg.storage).write_parquet(out_file, table)
    return table.num_rows


def _names(files: list[str]) -> list[str]:
    return sorted(Path(f).name for f in files)


def _stale(files: SharedFiles, feature_file: str, warehouse_files: list[str]) -> bool:
    if not files.exists(feature_file):
        return True
    built_from = (files.parquet(feature_file).schema_arrow.metadata or {}).get(SOURCE_KEY.encode())
    return built_from is None or json.loads(built_from) != _names(warehouse_files)
