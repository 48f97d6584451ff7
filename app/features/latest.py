"""The latest feature row per entity in a time window: what a materialization writes online.

Read file by file (one date partition at a time, row groups outside the window skipped by
their statistics), so memory holds one partition plus one row per entity, and no Ray task
is started for what one process does in a second at tens of thousands of rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


def latest_rows(
    files: Iterable[str | Path],
    *,
    entity: str,
    timestamp: str,
    start: datetime,
    end: datetime,
    filesystem=None,
) -> pd.DataFrame:
    """Per entity its newest row with `start <= timestamp <= end` (the window Feast's
    materialization uses, both ends included); a later file wins a tie."""
    latest = None
    for f in sorted(files):
        window = [(timestamp, ">=", start), (timestamp, "<=", end)]
        part = pq.read_table(f, filters=window, filesystem=filesystem).to_pandas(ignore_metadata=True)
        if part.empty:
            continue
        part = _newest(part, entity, timestamp)  # one row per entity before merging
        if latest is not None:
            part = _newest(pd.concat([latest, part], ignore_index=True), entity, timestamp)
        latest = part
    if latest is None:
        return pd.DataFrame()
    return latest.sort_values(entity, kind="stable").reset_index(drop=True)


def _newest(frame: pd.DataFrame, entity: str, timestamp: str) -> pd.DataFrame:
    return frame.sort_values(timestamp, kind="stable").drop_duplicates(entity, keep="last")
