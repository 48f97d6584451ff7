import pandas as pd

from app.features.transforms import (
    FEATURE_TIMESTAMP,
    add_features,
    bucket_labels,
    bucketize,
    cross,
    feature_spec,
    feature_table_batch,
    time_features,
)


def test_time_features_in_utc():
    ts = pd.Series(pd.to_datetime(["2026-01-03T23:30:00+00:00", "2026-01-05T08:00:00-02:00", None], utc=True))
    out = time_features(ts, ["hour", "day_of_week", "month", "is_weekend"])
    assert out["hour"].tolist() == [23, 10, -1]
    assert out["day_of_week"].tolist() == [5, 0, -1]
    assert out["is_weekend"].tolist() == [1, 0, -1]


def test_buckets_are_left_closed_and_keep_missing():
    edges = [25, 35]
    assert bucket_labels(edges) == ["<25", "25-35", ">=35"]
    out = bucketize(pd.Series([10, 25, 34.9, 35, None]), edges)
    assert out.tolist() == ["<25", "25-35", "25-35", ">=35", None]


def test_cross_is_missing_if_any_part_is():
    frame = pd.DataFrame({"a": ["x", None, "y"], "b": ["1", "2", "3"]})
    assert cross(frame, ["a", "b"]).tolist() == ["x|1", None, "y|3"]


def test_add_features_matches_the_spec(cfg):
    batch = pd.DataFrame(
        {
            "user_id": [1],
            "event_timestamp": pd.to_datetime(["2026-01-05T10:00:00Z"]),
            "label": [1],
            "age": [30.0],
            "income": [1.0],
            "score": [0.5],
            "country": ["US"],
            "gender": ["F"],
        }
    )
    spec = feature_spec(cfg)
    out = add_features(batch, cfg)
    assert set(spec.names) <= set(out.columns)
    assert out.loc[0, "age_bucket_x_gender"] == "25-35|F"
    table = feature_table_batch(batch, cfg)
    assert "label" not in table.columns
    assert table.loc[0, FEATURE_TIMESTAMP] == pd.Timestamp("2026-01-05T10:00:00Z").value // 1000
