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


def _refusal(df, cfg) -> str:
    with pytest.raises(TrainingDataError) as info:
        check_splits(time_split(df, cfg), cfg)
    assert "\n" not in str(info.value)  # the CLI prints it as one `error:` line
    return str(info.value)


def test_a_rare_class_too_thin_to_learn_or_measure_is_refused(cfg):
    df = _frame(cfg).sort_values("event_timestamp", ignore_index=True)
    rare = df.assign(label=(df.index % 200 == 0).astype(int))  # 0.5 %: about 2 positives per holdout
    message = _refusal(rare, cfg)
    assert "rows of label=1" in message and "model.min_class_rows=10" in message
    many = _frame(cfg, n=30_000).sort_values("event_timestamp", ignore_index=True)
    check_splits(time_split(many.assign(label=(many.index % 100 == 0).astype(int)), cfg), cfg)  # 1 %, 45 each


def test_a_holdout_of_one_class_is_refused_not_scored_nan(cfg):
    df = _frame(cfg).sort_values("event_timestamp", ignore_index=True)
    df.loc[df.index >= int(len(df) * 0.84), "label"] = 0  # the most recent rows: all negative
    assert "the holdout split has one class only" in _refusal(df, cfg)


def test_an_identifier_listed_as_a_categorical_is_refused(cfg):
    df = _frame(cfg)
    df["country"] = [f"c{i}" for i in range(len(df))]  # every row its own level
    message = _refusal(df, cfg)
    assert message.startswith("dataset.categorical: 'country' has 2100 distinct values in 2100 training rows")
    df["country"] = [f"c{i % 300}" for i in range(len(df))]  # many levels, each seen often: a category
    check_splits(time_split(df, cfg), cfg)


def test_the_baseline_fits_a_categorical_with_more_levels_than_its_bins(cfg):
    from app.model.preprocess import Preprocessor
    from app.training.baselines import baseline_categorical, hgb_baseline

    s = time_split(_frame(cfg).assign(country=[f"c{i % 300}" for i in range(3000)]), cfg)
    pre = Preprocessor(["age", "income"], ["country", "gender"]).fit(s.train)
    assert baseline_categorical(pre) == [False, False, False, True]  # 300 levels: an ordered code
    p = hgb_baseline(s.train, s.holdout, pre, "label")
    assert p.shape == (len(s.holdout),) and np.isfinite(p).all()
