"""Lineage to the snapshot: a training set read back at the warehouse snapshot a model
recorded is the one it trained on, after more data has landed."""

from __future__ import annotations

import pandas as pd
import pytest

from app.data.etl import run_etl
from app.data.schema import DataError
from app.data.synthetic import generate, write_dataset
from app.features.store import FeatureClient
from app.training.dataset import build_splits
from tests.configs import make_config

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
