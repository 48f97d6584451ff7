"""The built-in data set: users with repeated events over weeks and a learnable binary label.

The label's signal comes from numeric features, a categorical, the time of week and a
crossed (age bucket x gender) effect, so every feature family in the pipeline matters.
Realistic defects (nulls, out-of-range ages, duplicate events, unparseable timestamps,
unknown genders) exercise ETL's quarantine. `drift` shifts income and the country mix and
adds an unseen country, for the monitoring demo; `concept` changes how the label depends on
the features while their distribution stays the same (concept drift: only outcomes show it).
Output is deterministic for a seed and is generated in chunks so 10M rows never sit in memory
at once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.files import atomic_path

COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "CN"]
COUNTRY_P = np.array([0.30, 0.12, 0.12, 0.10, 0.14, 0.10, 0.07, 0.05])
DRIFT_COUNTRY_P = np.array([0.10, 0.05, 0.05, 0.05, 0.35, 0.30, 0.05, 0.05])
UNSEEN_COUNTRY = "MX"
COUNTRY_EFFECT = {
    "US": 0.3,
    "GB": 0.1,
    "DE": -0.2,
    "FR": 0.0,
    "IN": -0.4,
    "BR": -0.3,
    "JP": 0.2,
    "CN": 0.1,
    UNSEEN_COUNTRY: -0.5,
}
SPAN_DAYS = 56  # eight weeks, so a user's history spans several TTL-relevant weeks


def default_start() -> str:
    """Eight weeks before today (UTC), so the newest events are fresh for the online store."""
    return (pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=SPAN_DAYS)).strftime("%Y-%m-%d")


EVENTS_PER_USER = 8
CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class Defects:
    """Share of rows carrying each defect; ETL must quarantine or dedupe every one."""

    null_income: float = 0.01  # a nullable feature: kept, imputed later
    null_label: float = 0.002
    bad_age: float = 0.005
    bad_timestamp: float = 0.003
    bad_gender: float = 0.002
    duplicate: float = 0.01


def _label_logit(df: pd.DataFrame, ts: pd.DatetimeIndex, concept: float = 0.0) -> np.ndarray:
    """The label's log-odds. `concept` (0 to 1) moves every feature's effect towards its
    reverse: at 1 what raised the odds lowers them as much (a changed product, a new fraud
    pattern), while the features themselves are drawn as before."""
    age, gender = df["age"].to_numpy(float), df["gender"].to_numpy()
    z = (
        0.9 * (np.log(df["income"].to_numpy(float)) - 10.8)
        + 2.0 * (df["score"].to_numpy(float) - 0.5)
        + df["country"].map(COUNTRY_EFFECT).to_numpy(float)
        + 0.6 * (ts.dayofweek.to_numpy() >= 5)  # weekend
        + 0.4 * ((ts.hour.to_numpy() >= 18) & (ts.hour.to_numpy() <= 22))  # evening
        - 0.01 * (age - 45)
    )
    # The crossed effect: invisible to either column alone.
    z += 1.0 * ((age >= 25) & (age < 35) & (gender == "F"))
    z -= 1.0 * ((age >= 50) & (age < 65) & (gender == "M"))
    return -0.6 + (1.0 - 2.0 * concept) * z


def _chunk(
    rng: np.random.Generator,
    n_users: int,
    first_user: int,
    start: pd.Timestamp,
    drift: float,
    defects: Defects,
    concept: float = 0.0,
) -> pd.DataFrame:
    countries = COUNTRIES
    p = (1 - drift) * COUNTRY_P + drift * DRIFT_COUNTRY_P
    if drift > 0:
        countries = [*COUNTRIES, UNSEEN_COUNTRY]
        unseen = min(0.3 * drift, 0.5)
        p = np.append(p * (1 - unseen), unseen)
    users = pd.DataFrame(
        {
            "user_id": np.arange(first_user, first_user + n_users, dtype=np.int64),
            "age": rng.integers(18, 80, n_users),
            "gender": rng.choice(["F", "M"], n_users),
            "country": rng.choice(countries, n_users, p=p / p.sum()),
            "base_income": rng.lognormal(10.8 + 0.5 * drift, 0.5, n_users),
        }
    )
    events = rng.poisson(EVENTS_PER_USER - 1, n_users) + 1
    df = users.loc[users.index.repeat(events)].reset_index(drop=True)
    n = len(df)
    seconds = rng.integers(0, SPAN_DAYS * 86400, n)
    ts = pd.DatetimeIndex(start + pd.to_timedelta(seconds, unit="s"))
    df["income"] = (df.pop("base_income") * rng.lognormal(0, 0.05, n)).round(2)
    df["score"] = np.clip(rng.normal(0.5, 0.2, n), 0, 1).round(4)
    df["label"] = pd.array(rng.random(n) < 1 / (1 + np.exp(-_label_logit(df, ts, concept))), dtype="Int64")
    df["event_timestamp"] = ts.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
    df["age"] = df["age"].astype("Int64")
    df["income"] = df["income"].astype("Float64")
    return _inject_defects(rng, df, defects)


def _inject_defects(rng: np.random.Generator, df: pd.DataFrame, d: Defects) -> pd.DataFrame:
    n = len(df)

    def pick(share: float) -> np.ndarray:
        return rng.random(n) < share

    df.loc[pick(d.null_income), "income"] = pd.NA
    df.loc[pick(d.null_label), "label"] = pd.NA
    bad_age = pick(d.bad_age)
    df.loc[bad_age, "age"] = rng.choice([-1, 150, 999], int(bad_age.sum()))
    bad_ts = pick(d.bad_timestamp)
    df.loc[bad_ts, "event_timestamp"] = rng.choice(
        ["not-a-date", "2026-13-45T99:00:00", ""], int(bad_ts.sum())
    )
    df.loc[pick(d.bad_gender), "gender"] = "?"
    dupes = df[pick(d.duplicate)]
    df = pd.concat([df, dupes], ignore_index=True)
    return df.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)


def generate_chunks(
    rows: int,
    *,
    seed: int = 0,
    drift: float = 0.0,
    concept: float = 0.0,
    start: str | None = None,
    first_user: int = 1,
    defects: Defects | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Yield `rows` rows in chunks; chunk i is seeded by (seed, i), so the output is the same
    for the same seed and start."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    for name, value in (("drift", drift), ("concept", concept)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1")
    defects = defects or Defects()
    start_ts = pd.Timestamp(start or default_start())
    remaining, user, i = rows, first_user, 0
    while remaining > 0:
        n_users = max(1, round(min(remaining, chunk_rows) / EVENTS_PER_USER / (1 + defects.duplicate)))
        rng = np.random.default_rng([seed, i])
        df = _chunk(rng, n_users, user, start_ts, drift, defects, concept).head(remaining)
        remaining -= len(df)
        user += n_users
        i += 1
        yield df


def generate(rows: int, **kwargs) -> pd.DataFrame:
    """The whole data set as one DataFrame (small sizes: tests, notebooks)."""
    return pd.concat(list(generate_chunks(rows, **kwargs)), ignore_index=True)


def _table(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def write_dataset(chunks: Iterator[pd.DataFrame], out: str | Path, fmt: str = "parquet") -> list[Path]:
    """Write chunks to a file (`.parquet`/`.csv`/`.jsonl` path) or into a folder (one file per
    chunk). Each file is written under a temporary name and renamed, so no half file is left."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".csv", ".jsonl"):
        with atomic_path(out) as tmp:
            writer = None
            for i, df in enumerate(chunks):
                if suffix == ".parquet":
                    table = _table(df)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                elif suffix == ".csv":
                    df.to_csv(tmp, mode="a" if i else "w", header=not i, index=False)
                else:
                    with open(tmp, "a" if i else "w") as fh:
                        df.to_json(fh, orient="records", lines=True)
            if writer:
                writer.close()
        return [out]
    if fmt not in ("parquet", "csv", "jsonl"):
        raise ValueError(f"format {fmt!r} is not one of parquet, csv, jsonl")
    # The parts are written into a sibling folder moved into place at the end: an interrupted
    # run leaves no partial data set that a later run would take for the whole one.
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        names = [
            write_dataset(iter([df]), staging / f"part-{i:05d}.{fmt}")[0].name for i, df in enumerate(chunks)
        ]
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if out.exists():  # adding to a folder that has files: each part lands whole
            for name in names:
                os.replace(staging / name, out / name)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names]
