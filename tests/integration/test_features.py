"""Feast feature store on a real local Ray: apply, materialize, online and point-in-time joins.

The point-in-time tests compare `FeatureClient.historical` with a brute-force join: the
latest feature row with timestamp <= the entity row's timestamp and within the TTL.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import app.features.store as store_module
from app.data import tables
from app.data.etl import run_etl
from app.data.schema import DataError
from app.data.synthetic import generate, write_dataset
from app.features.store import FeatureClient
from app.features.transforms import feature_spec
from tests.configs import make_config

pytestmark = pytest.mark.integration
TTL_DAYS = 7  # short, so entity rows a week after a user's last event must come back empty


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A warehouse and applied feature store: ~4,800 users with ~8 events each over 8 weeks
    (a feature table over 1 MB, so Feast's smallest join threshold can be crossed)."""
    tmp = tmp_path_factory.mktemp("features")
    cfg = make_config(tmp, features={"ttl_days": TTL_DAYS})
    write_dataset(iter([generate(40_000, seed=11)]), tmp / "raw.parquet")
    run_etl(cfg, str(tmp / "raw.parquet"))
    client = FeatureClient(cfg)
    assert client.apply() > 0
    assert client.table_bytes() > 1 << 20
    return cfg, client


def _feature_table(cfg) -> pd.DataFrame:
    return pq.read_table(str(cfg.storage.path(cfg.storage.features)), partitioning=None).to_pandas()


def _entity_rows(cfg, rng, n=1500) -> pd.DataFrame:
    """Entity rows: known users at random times (before, between, long after their events),
    repeated rows, and users that have no history at all."""
    table = _feature_table(cfg)
    users = table["user_id"].unique()
    lo, hi = table["event_timestamp"].min(), table["event_timestamp"].max()
    span = int((hi - lo).total_seconds()) + 30 * 86400
    ts = lo - pd.Timedelta(days=5) + pd.to_timedelta(rng.integers(0, span, n), "s")
    ids = rng.choice(np.append(users, [10**9, 10**9 + 1]), n)
    exact = table.sample(200, random_state=1)[["user_id", "event_timestamp"]]  # ts equal to an event
    df = pd.concat([pd.DataFrame({"user_id": ids, "event_timestamp": ts}), exact, exact.head(20)])
    return df.reset_index(drop=True).assign(row=lambda d: range(len(d)))


def brute_force(
    entity_df: pd.DataFrame, table: pd.DataFrame, names: list[str], ttl_days: float
) -> pd.DataFrame:
    pairs = entity_df.merge(table, on="user_id", how="left", suffixes=("", "_f"))
    ok = (pairs["event_timestamp_f"] <= pairs["event_timestamp"]) & (
        pairs["event_timestamp_f"] >= pairs["event_timestamp"] - pd.Timedelta(days=ttl_days)
    )
    best = pairs[ok].sort_values("event_timestamp_f").groupby("row").tail(1).set_index("row")
    return best.reindex(entity_df["row"])[names].reset_index(drop=True)


def _assert_matches_brute_force(cfg, got: pd.DataFrame, entity_df: pd.DataFrame):
    names = feature_spec(cfg).names
    expected = brute_force(entity_df, _feature_table(cfg), names, TTL_DAYS)
    assert len(got) == len(entity_df)
    assert got["row"].tolist() == entity_df["row"].tolist()
    matched = expected["age"].notna()
    assert 0.2 < matched.mean() < 0.8, "the rows must cover hits as well as misses and TTL expiry"
    for name in names:
        a = got[name].astype(object).where(got[name].notna(), None).tolist()
        b = expected[name].astype(object).where(expected[name].notna(), None).tolist()
        assert a == b, f"feature {name} differs from the brute-force join"


@pytest.mark.parametrize("buckets", [1, 8])
def test_historical_matches_brute_force(built, monkeypatch, buckets):
    """In process (a table under one partition's size), and one Ray task per entity hash
    bucket (as for a table above it)."""
    cfg, client = built
    monkeypatch.setattr(store_module, "PARTITION_BYTES", client.table_bytes() // buckets + 1)
    entity_df = _entity_rows(cfg, np.random.default_rng(5))
    got = client.historical(entity_df).to_pandas()
    _assert_matches_brute_force(cfg, got, entity_df)


def test_feast_engine_below_threshold_matches_after_ttl(built):
    cfg, _ = built
    feast_cfg = make_config(
        cfg.storage.path().parent, features={"ttl_days": TTL_DAYS, "historical_engine": "feast"}
    )
    entity_df = _entity_rows(cfg, np.random.default_rng(6), n=300)
    got = FeatureClient(feast_cfg).historical(entity_df).to_pandas()
    _assert_matches_brute_force(cfg, got, entity_df)


def test_feast_engine_refuses_above_threshold(built):
    cfg, _ = built
    over = make_config(
        cfg.storage.path().parent,
        features={"ttl_days": TTL_DAYS, "historical_engine": "feast", "broadcast_join_threshold_mb": 1},
    )
    with pytest.raises(DataError, match="windowed join misses history"):
        FeatureClient(over).historical(_entity_rows(cfg, np.random.default_rng(7), n=10))


def test_feast_windowed_join_still_misses_history(built):
    """Canary for the README's workaround: when Feast's windowed join becomes correct, this
    fails, and the `historical_engine` guard above can go."""
    cfg, _ = built
    over = make_config(
        cfg.storage.path().parent, features={"ttl_days": TTL_DAYS, "broadcast_join_threshold_mb": 1}
    )
    entity_df = _entity_rows(cfg, np.random.default_rng(8), n=300)
    keys = entity_df[["user_id", "event_timestamp"]].drop_duplicates()
    got = FeatureClient(over)._feast_join(keys)
    expected = brute_force(keys.assign(row=range(len(keys))), _feature_table(cfg), ["age"], 10**4)
    assert got["age"].notna().sum() < expected["age"].notna().sum()


def test_apply_is_incremental(built):
    cfg, client = built
    assert client.apply() == 0, "nothing changed in the warehouse"


def test_online_serves_the_latest_row_and_none_for_unknown(built):
    cfg, client = built
    before = client.registry_version()
    window = client.materialize()
    assert window is not None
    assert client.registry_version() != before, "replicas drop cached rows on this change"
    assert client.materialize() is None, "second run: nothing new"
    table = _feature_table(cfg)
    fresh = table[table["event_timestamp"] >= pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=TTL_DAYS)]
    latest = fresh.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    stale = sorted(set(table["user_id"]) - set(latest.index))[:20]
    assert latest.index.size > 100 and stale, "the data must hold both fresh and stale users"
    users = latest.index.tolist()
    rows = client.online([*users, *stale, 10**9])
    for user, row in zip(users, rows, strict=False):
        assert row["age"] == latest.loc[user, "age"]
        assert row["age_bucket_x_gender"] == latest.loc[user, "age_bucket_x_gender"]
        assert row["feature_timestamp"] == latest.loc[user, "feature_timestamp"]
    assert all(r["age"] is None for r in rows[len(users) :]), "older than the TTL, or unknown"


def test_feasts_own_materialization_fills_the_online_store_identically(built, tmp_path):
    """`materialize_engine: feast` (Feast's Ray compute engine) and the default write the same
    rows: the same table, materialized both ways, read back for every user."""
    cfg, client = built
    client.materialize()  # a no-op when the test above ran first
    other = make_config(
        tmp_path,
        features={"ttl_days": TTL_DAYS, "materialize_engine": "feast"},
        storage={"catalog": tables.catalog_properties(cfg.storage)},  # the same warehouse table
    )
    shutil.copytree(cfg.storage.path(cfg.storage.features), other.storage.path(other.storage.features))
    feast_client = FeatureClient(other)
    assert feast_client.apply() == 0, "the copied table is up to date"
    _add_older_copies(other.storage.path(other.storage.features), cfg.dataset.timestamp, cfg.dataset.entity)
    ours_at = client.store.get_feature_view(client.view_name).most_recent_end_time
    assert feast_client.materialize() is not None
    feasts_by = datetime.now(timezone.utc)
    # Both engines drop rows older than the TTL of their own "now", taken seconds apart: a user
    # whose newest row aged past the TTL in between is kept by one and dropped by the other.
    table = _feature_table(cfg)
    newest = table.groupby("user_id")["event_timestamp"].max()
    ttl, slack = pd.Timedelta(days=TTL_DAYS), pd.Timedelta(minutes=1)
    on_edge = newest.between(ours_at - ttl - slack, feasts_by - ttl + slack)
    assert on_edge.sum() < 0.01 * len(newest)
    users = sorted(newest.index[~on_edge])
    ours, feasts = client.online(users), feast_client.online(users)
    assert sum(r["age"] is not None for r in ours) > 100
    differ = [(user, a, b) for user, a, b in zip(users, ours, feasts, strict=True) if a != b]
    assert not differ, f"{len(differ)} users differ, e.g. (user, ours, feast's): {differ[:3]}"


def _add_older_copies(features, timestamp: str, entity: str) -> None:
    """Older, altered copies of the newest day's rows, in a file read after every other and
    behind thousands of other users' rows: a materialization that deduplicates only within a
    block and lets the last write win (Feast's Ray engine without `pull_latest_features`)
    serves the copies whenever a copy and its original land in different blocks."""
    newest = sorted(features.glob("date=*"))[-1]
    original = pq.read_table(newest / store_module.FEATURE_FILE)
    rows = original.to_pandas(ignore_metadata=True)
    rows[timestamp] -= pd.Timedelta(seconds=1)
    others = pd.concat([rows] * (1 + 8192 // len(rows)), ignore_index=True)
    others[entity] += 10**9 + np.arange(len(others))
    copies = pd.concat([others, rows.assign(age=-1.0)], ignore_index=True)
    last = features / "date=9999-12-31"
    last.mkdir()
    pq.write_table(
        pa.Table.from_pandas(copies, preserve_index=False).cast(original.schema), last / "part-0.parquet"
    )


def test_historical_needs_entity_and_timestamp(built):
    _, client = built
    with pytest.raises(DataError, match="missing column"):
        client.historical(pd.DataFrame({"user_id": [1]}))
