"""The warehouse on a real object store: SeaweedFS's S3 gateway and Iceberg REST catalog
(tests/objectstore.py), with no moto or other in-process fake. ETL, the feature build and the
training set read the table through the catalog; nothing of it lands under the storage root."""

from __future__ import annotations

import pandas as pd
import pytest

import app.features.store as store_module
from app.data import tables, warehouse
from app.data.etl import run_etl
from app.data.schema import DataError
from app.data.shared_files import shared_files
from app.data.synthetic import generate, write_dataset
from app.features.store import FeatureClient
from app.training.dataset import build_splits
from tests.configs import make_config
from tests.etl_runs import START, two_runs_at_once_lose_and_duplicate_no_row
from tests.objectstore import TABLE_BUCKET, start_object_store

pytestmark = pytest.mark.integration
SHARED_BUCKET = "shared"  # storage.state: the shared state and data files


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    server = start_object_store(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


def on_store(tmp_path, store, **catalog):
    """A config whose tables live in the object store (a namespace of their own per test)."""
    return make_config(tmp_path, storage={"catalog": store.catalog(**catalog)})


@pytest.fixture
def fresh_namespace(store):
    """Each test starts with no warehouse table in the store's catalog."""
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog("cleanup", **store.catalog())
    if catalog.table_exists(warehouse.WAREHOUSE):
        catalog.purge_table(warehouse.WAREHOUSE)
    tables._catalog.cache_clear()


def test_etl_features_and_training_data_run_against_the_object_store(tmp_path, store, fresh_namespace):
    cfg = on_store(tmp_path, store)
    write_dataset(iter([generate(6000, seed=1, start=START)]), tmp_path / "a.parquet")
    report = run_etl(cfg, str(tmp_path / "a.parquet"))
    assert report.balanced() and report.rows_written > 5000

    table = warehouse.open_table(cfg, create=False)
    assert table.location().startswith(f"s3://{TABLE_BUCKET}/")
    data_files = [k for k in store.objects() if k.endswith(".parquet") and "/data/day=" in k]
    assert len(data_files) == report.partitions  # one file per day, in the store
    assert not cfg.storage.warehouse.exists() and not cfg.storage.path("catalog.db").exists()
    rows = warehouse.read_table(cfg).to_pandas()
    assert len(rows) == report.rows_written and not rows.duplicated(["user_id", "event_timestamp"]).any()

    again = run_etl(cfg, str(tmp_path / "a.parquet"))
    assert again.rows_written == 0 and len(warehouse.open_table(cfg).snapshots()) == 1

    assert FeatureClient(cfg).apply() == report.partitions  # features read the days from the store
    splits = build_splits(cfg)  # Ray Data reads the table from the store
    assert splits.lineage["warehouse_snapshot"] == str(table.current_snapshot().snapshot_id)
    assert int(splits.lineage["warehouse_rows"]) == report.rows_written


def test_the_feature_table_staging_and_quarantine_live_on_the_store(
    tmp_path, store, fresh_namespace, monkeypatch
):
    """With `storage.state` on the store, ETL stages and quarantines there, and the feature
    table is built, joined (in one process, and in buckets by tasks) and materialized from
    there: the storage root holds none of it."""
    store.create_bucket(SHARED_BUCKET)
    prefix = f"{SHARED_BUCKET}/{tmp_path.name}"
    cfg = make_config(
        tmp_path / "node",
        storage={"catalog": store.catalog(), "state": f"s3://{prefix}"},
        features={"ttl_days": 3650},  # the rows' dates are fixed: all within the TTL of today
    )
    write_dataset(iter([generate(6000, seed=1, start=START)]), tmp_path / "a.parquet")
    report = run_etl(cfg, str(tmp_path / "a.parquet"))
    assert report.balanced() and report.rows_quarantined > 0
    client = FeatureClient(cfg)
    assert client.apply() == report.partitions

    def keys() -> list[str]:
        return [k.removeprefix(f"{prefix}/") for k in store.objects(SHARED_BUCKET) if k.startswith(prefix)]

    assert len([k for k in keys() if k.startswith("features/date=")]) == report.partitions
    quarantined = [k for k in keys() if k.startswith(f"quarantine/run={report.run_id}/")]
    files = shared_files(cfg.storage)
    assert files.read_table([f"s3://{prefix}/{k}" for k in quarantined]).num_rows == report.rows_quarantined

    rows = warehouse.read_table(cfg).to_pandas().sample(800, random_state=2)
    entity_df = rows[["user_id", "event_timestamp"]].reset_index(drop=True)
    in_process = client.historical(entity_df).to_pandas()
    monkeypatch.setattr(store_module, "PARTITION_BYTES", client.table_bytes() // 4 + 1)
    in_buckets = client.historical(entity_df).to_pandas()  # tasks write and read buckets on the store
    assert in_process["age"].notna().all()  # each row's own event is its feature row
    pd.testing.assert_frame_equal(in_process, in_buckets)
    assert not any(k.startswith(cfg.storage.staging) for k in keys()), "staging is cleaned up"

    assert client.materialize() is not None
    online = client.online(entity_df["user_id"].unique()[:50].tolist())
    assert all(row["age"] is not None for row in online)
    assert not {"features", "staging", "quarantine", "reports"} & {
        p.name for p in cfg.storage.path().iterdir()
    }


def test_two_etl_runs_at_once_through_the_rest_catalog(tmp_path, store, fresh_namespace, monkeypatch):
    two_runs_at_once_lose_and_duplicate_no_row(on_store(tmp_path, store), tmp_path, monkeypatch)


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        ({"secret": "not-the-secret"}, "signature"),
        ({"uri": "http://127.0.0.1:9"}, "http://127.0.0.1:9 is not usable"),
        ({"bucket": "no-such-bucket"}, "no-such-bucket"),
    ],
)
def test_a_refused_or_unreachable_catalog_is_one_clear_error_and_nothing_is_written(
    tmp_path, store, catalog, message
):
    tables._catalog.cache_clear()
    cfg = on_store(tmp_path, store, **catalog)
    write_dataset(iter([generate(500, seed=1, start=START)]), tmp_path / "a.parquet")
    before = store.objects()
    with pytest.raises(DataError, match=message) as error:
        run_etl(cfg, str(tmp_path / "a.parquet"))
    assert "\n" not in str(error.value) and "the table catalog" in str(error.value)
    assert store.objects() == before
    assert not any(cfg.storage.path(cfg.storage.staging).glob("*/*")), "staging is cleaned up"
