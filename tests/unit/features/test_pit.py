import numpy as np
import pandas as pd

from app.features.pit import apply_ttl, asof_join
from app.features.transforms import FEATURE_TIMESTAMP, epoch_us

TTL = pd.Timedelta(days=3)


def brute_force(entity_df, feature_df, ttl):
    """For each entity row: the latest feature row at or before its time, within the TTL."""
    rows = []
    for _, e in entity_df.iterrows():
        f = feature_df[(feature_df.k == e.k) & (feature_df.ts <= e.ts) & (feature_df.ts >= e.ts - ttl)]
        rows.append(f.sort_values("ts").iloc[-1]["v"] if len(f) else np.nan)
    return pd.Series(rows, dtype="float64")


def _features(rng, n_keys=20, n_rows=400):
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 20 * 86400, n_rows), "s")
    df = pd.DataFrame({"k": rng.integers(0, n_keys, n_rows), "ts": ts, "v": rng.normal(size=n_rows)})
    df = df.drop_duplicates(["k", "ts"])
    df[FEATURE_TIMESTAMP] = epoch_us(df["ts"])
    return df


def test_asof_join_matches_brute_force_with_ttl_and_unknown_keys():
    rng = np.random.default_rng(0)
    feats = _features(rng)
    ent_ts = pd.Timestamp("2025-12-30", tz="UTC") + pd.to_timedelta(rng.integers(0, 30 * 86400, 300), "s")
    entity = pd.DataFrame({"k": rng.integers(0, 25, 300), "ts": ent_ts})  # keys 20-24: no history
    got = asof_join(entity, feats, key="k", ts="ts", features=["v"], ttl=TTL)
    expected = brute_force(entity, feats, TTL)
    assert len(got) == len(entity)
    assert got["k"].tolist() == entity["k"].tolist(), "input order is kept"
    pd.testing.assert_series_equal(got["v"].astype("float64"), expected, check_names=False)
    assert expected.isna().sum() > 10 and expected.notna().sum() > 100, "the data covers both cases"


def test_apply_ttl_blanks_stale_and_unmatched_rows():
    now = pd.Timestamp("2026-01-10", tz="UTC")
    joined = pd.DataFrame(
        {
            "ts": [now, now, now],
            "v": [1.0, 2.0, np.nan],
            FEATURE_TIMESTAMP: [
                epoch_us(pd.Series([now - pd.Timedelta(days=1)]))[0],
                epoch_us(pd.Series([now - pd.Timedelta(days=4)]))[0],
                np.nan,
            ],
        }
    )
    out = apply_ttl(joined, "ts", ["v"], TTL)
    assert out["v"].tolist()[0] == 1.0
    assert out["v"].isna().tolist() == [False, True, True]
