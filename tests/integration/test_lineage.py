"""Lineage to the snapshot: a training set read back at the warehouse snapshot a model
recorded is the one it trained on, after more data has landed."""

from __future__ import annotations

import pandas as pd
import pytest

from app.data import warehouse
from app.data.etl import run_etl
from app.data.schema import DataError
from app.data.synthetic import generate, write_dataset
from app.features.store import FeatureClient
from app.training.dataset import build_splits
from tests.configs import make_config
from tests.duck import duckdb_with_iceberg

pytestmark = pytest.mark.integration


def test_the_recorded_snapshot_rebuilds_the_identical_training_set_after_more_data(tmp_path):
    cfg = make_config(tmp_path)
    write_dataset(iter([generate(6000, seed=1, start="2026-01-05")]), tmp_path / "a.parquet")
    run_etl(cfg, str(tmp_path / "a.parquet"))
    FeatureClient(cfg).apply()
    then = build_splits(cfg)
    snapshot = int(then.lineage["warehouse_snapshot"])
    assert then.lineage["warehouse_rows"] == str(sum(len(p) for p in (then.train, then.valid, then.holdout)))

    # The same users come back months later; the features of their new days are built too.
    write_dataset(iter([generate(4000, seed=2, start="2026-06-01")]), tmp_path / "b.parquet")
    assert run_etl(cfg, str(tmp_path / "b.parquet")).rows_written > 3500
    assert FeatureClient(cfg).apply() > 0

    now = build_splits(cfg)
    assert int(now.lineage["warehouse_snapshot"]) != snapshot and now.fingerprint() != then.fingerprint()
    again = build_splits(cfg, snapshot)
    assert again.fingerprint() == then.fingerprint()
    assert again.lineage == then.lineage
    for part in ("train", "valid", "holdout"):
        pd.testing.assert_frame_equal(getattr(again, part), getattr(then, part), obj=part)

    with pytest.raises(DataError, match="has no snapshot 12345"):
        build_splits(cfg, 12345)


def test_duckdb_reads_the_warehouse_at_each_snapshot_as_mlsys_does(tmp_path):
    """Another engine, given only the table's metadata file, reads the same rows at each
    snapshot: the warehouse is a plain Iceberg table."""
    cfg = make_config(tmp_path)
    for name, seed, start in (("a", 1, "2026-01-05"), ("b", 2, "2026-03-01")):
        write_dataset(iter([generate(3000, seed=seed, start=start)]), tmp_path / f"{name}.parquet")
        run_etl(cfg, str(tmp_path / f"{name}.parquet"))
    table = warehouse.open_table(cfg, create=False)
    first, second = (s.snapshot_id for s in table.snapshots())
    con = duckdb_with_iceberg()
    keys = ["user_id", "event_timestamp"]
    for snapshot in (first, second):
        ours = warehouse.read_table(cfg, snapshot).to_pandas()
        theirs = con.execute(
            f"SELECT * FROM iceberg_scan('{table.metadata_location}', snapshot_from_id={snapshot})"
        ).df()
        theirs = theirs[ours.columns].sort_values(keys).reset_index(drop=True)
        theirs = theirs.astype(ours.dtypes.to_dict())
        pd.testing.assert_frame_equal(theirs, ours, obj=f"snapshot {snapshot}")
    assert len(warehouse.read_table(cfg, first)) < len(warehouse.read_table(cfg, second))
