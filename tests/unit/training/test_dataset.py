import numpy as np
import pandas as pd
import pytest

from app.training.dataset import Splits, TrainingDataError, check_splits, time_split


def _frame(cfg, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 50 * 86400, n), "s")
    df = pd.DataFrame(
        {"user_id": rng.integers(0, 500, n), "event_timestamp": ts, "label": rng.integers(0, 2, n)}
    )
    for c in ["age", "income", "score"]:
        df[c] = rng.normal(size=n)
    for c in ["day_of_week", "month", "hour"]:
        df[c] = rng.integers(0, 5, n)
    for c in ["country", "gender", "age_bucket", "age_bucket_x_gender"]:
        df[c] = rng.choice(["a", "b"], n)
    return df


def test_split_is_by_time_with_the_holdout_last(cfg):
    s = time_split(_frame(cfg), cfg)
    assert s.train["event_timestamp"].max() < s.valid["event_timestamp"].min()
    assert s.valid["event_timestamp"].max() < s.holdout["event_timestamp"].min()
    assert len(s.train) + len(s.valid) + len(s.holdout) == 3000
    assert abs(len(s.holdout) / 3000 - cfg.model.holdout_fraction) < 0.01
    check_splits(s, cfg)


def test_one_class_is_refused(cfg):
    df = _frame(cfg).assign(label=1)
    with pytest.raises(TrainingDataError, match="one class only"):
        check_splits(time_split(df, cfg), cfg)


def test_too_few_rows_is_refused(cfg):
    with pytest.raises(TrainingDataError, match="fewer than model.min_rows"):
        check_splits(time_split(_frame(cfg, n=500), cfg), cfg)


def test_all_null_feature_is_refused(cfg):
    df = _frame(cfg).assign(income=np.nan)
    with pytest.raises(TrainingDataError, match=r"\['income'\] are null in every training row"):
        check_splits(time_split(df, cfg), cfg)


def test_fingerprint_tracks_the_rows(cfg):
    a = time_split(_frame(cfg), cfg)
    b = time_split(_frame(cfg, seed=1), cfg)
    assert a.fingerprint() == time_split(_frame(cfg), cfg).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert isinstance(a, Splits)


def test_each_source_is_split_by_its_own_time(cfg):
    from app.training.dataset import split_sources

    warehouse = _frame(cfg)
    # Production rows: all newer than every warehouse row, string keys as entities
    production = _frame(cfg, n=1000, seed=2)
    production["event_timestamp"] += pd.Timedelta(days=100)
    production["user_id"] = production["user_id"].astype(str)
    s = split_sources({"production": production, "warehouse": warehouse}, cfg)
    newest_warehouse = warehouse["event_timestamp"].max()
    for part in (s.train, s.valid, s.holdout):  # every split holds both sources
        assert (part["event_timestamp"] > newest_warehouse).any()
        assert (part["event_timestamp"] <= newest_warehouse).any()
    assert len(s.train) + len(s.valid) + len(s.holdout) == 4000
    new = s.train[s.train["event_timestamp"] > newest_warehouse]
    assert new["event_timestamp"].max() < s.holdout["event_timestamp"].max()
    assert s.train["user_id"].map(type).eq(str).all()  # one entity type: arrow can hold it
    check_splits(s, cfg)
