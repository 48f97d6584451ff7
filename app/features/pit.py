"""Point-in-time joins: the TTL rule applied to Feast's output, and a partitioned join for
feature tables too large for Feast's broadcast path.

Feast 0.67's Ray offline store ignores a FeatureView's TTL, and its windowed join (above
`broadcast_join_threshold_mb`) only matches feature rows from the same hour window and
block, so it misses history. We keep Feast's broadcast join, apply the TTL ourselves, and
above the threshold join per hash partition of the entity with pandas' `merge_asof`.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pyarrow as pa
import ray

from app.config import JOIN_BUCKET
from app.data.shared_files import SharedFiles
from app.features.transforms import FEATURE_TIMESTAMP, epoch_us, utc_us

BUCKET = JOIN_BUCKET


def apply_ttl(joined: pd.DataFrame, ts_col: str, features: list[str], ttl: pd.Timedelta) -> pd.DataFrame:
    """Blank features whose source row is older than the TTL at the entity row's time."""
    age_us = epoch_us(joined[ts_col]) - pd.to_numeric(joined[FEATURE_TIMESTAMP])
    stale = ~(age_us <= ttl // pd.Timedelta(1, "us"))  # NaN (no match) counts as stale
    out = joined.copy()
    for c in [*features, FEATURE_TIMESTAMP]:
        out[c] = out[c].mask(stale)
    return out


def asof_join(
    entity_df: pd.DataFrame,
    feature_df: pd.DataFrame,
    *,
    key: str,
    ts: str,
    features: list[str],
    ttl: pd.Timedelta,
) -> pd.DataFrame:
    """Latest feature row per entity row with feature time <= entity time, within the TTL."""
    left = entity_df.assign(_row=range(len(entity_df)))
    left[ts] = utc_us(left[ts])
    right = feature_df[[key, ts, *features, FEATURE_TIMESTAMP]].copy()
    right[ts] = utc_us(right[ts])
    # Drop right-side time column clash: the matched row's time lives in FEATURE_TIMESTAMP.
    right = right.rename(columns={ts: "_fts"}).sort_values("_fts", kind="stable")
    left = left.sort_values(ts, kind="stable")
    merged = pd.merge_asof(
        left,
        right,
        left_on=ts,
        right_on="_fts",
        by=key,
        direction="backward",
        tolerance=ttl,
        allow_exact_matches=True,
    )
    merged = merged.drop(columns="_fts").sort_values("_row").drop(columns="_row")
    return merged.reset_index(drop=True)


def _read(files: SharedFiles, uris: list[str]) -> pd.DataFrame:
    """Parquet to plain numpy-backed pandas, whatever dtypes the writer's metadata recorded
    (Ray may hand map_batches Arrow-backed columns, which merge_asof cannot mix)."""
    return files.read_table(uris).to_pandas(ignore_metadata=True)


def _bucket_of(values: pd.Series, buckets: int) -> pd.Series:
    # pandas' object hash is keyed by a fixed constant: the same bucket in every process.
    hashed = pd.util.hash_pandas_object(values.astype(str), index=False).to_numpy()
    return pd.Series((hashed % buckets).astype("int64"), index=values.index)


def _join_bucket(
    files: SharedFiles,
    entity_files: list[str],
    feature_files: list[str],
    out_file: str,
    key: str,
    ts: str,
    features: list[str],
    ttl: pd.Timedelta,
) -> int:
    entity_df = _read(files, entity_files).drop(columns=[BUCKET], errors="ignore")
    feature_df = (
        _read(files, feature_files).drop(columns=[BUCKET], errors="ignore") if feature_files else None
    )
    if feature_df is None or feature_df.empty:
        joined = entity_df.assign(**{c: None for c in [*features, FEATURE_TIMESTAMP]})
    else:
        joined = asof_join(entity_df, feature_df, key=key, ts=ts, features=features, ttl=ttl)
    files.write_parquet(out_file, pa.Table.from_pandas(joined, preserve_index=False))
    return len(joined)


def partitioned_asof_join(
    entity_df: pd.DataFrame,
    feature_ds: ray.data.Dataset,
    *,
    key: str,
    ts: str,
    features: list[str],
    ttl: pd.Timedelta,
    buckets: int,
    files: SharedFiles,
    scratch: str,
) -> pd.DataFrame:
    """`asof_join` at scale: hash-partition both sides by entity, join each bucket in a task.
    The buckets go through the folder `scratch` of `files`, which tasks on every node reach."""
    run = files.uri(scratch, uuid.uuid4().hex)
    fs = files.fs
    try:
        ent = entity_df.assign(**{BUCKET: _bucket_of(entity_df[key], buckets)})
        ray.data.from_pandas(ent).write_parquet(
            files.path(f"{run}/entity"), filesystem=fs, partition_cols=[BUCKET]
        )

        def tag(batch: pd.DataFrame) -> pd.DataFrame:
            return batch.assign(**{BUCKET: _bucket_of(batch[key], buckets)})

        feature_ds.map_batches(tag, batch_format="pandas").write_parquet(
            files.path(f"{run}/feature"), filesystem=fs, partition_cols=[BUCKET]
        )
        entity_files, feature_files = (
            files.partitions(f"{run}/{side}", BUCKET) for side in ("entity", "feature")
        )
        join = ray.remote(num_cpus=1)(_join_bucket)
        tasks = [
            join.remote(
                files,
                uris,
                feature_files.get(bucket, []),
                f"{run}/out/part-{bucket}.parquet",  # pyarrow skips "_" names
                key,
                ts,
                features,
                ttl,
            )
            for bucket, uris in sorted(entity_files.items())
        ]
        ray.get(tasks)
        return _read(files, files.parquet_files(f"{run}/out"))
    finally:
        files.remove(run)
