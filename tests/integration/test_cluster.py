"""Our parquet reads: the same rows as pyarrow, without a process per read."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import ray
import ray._private.state  # the GCS's actor table (the state API needs the dashboard)

from app.cluster.tasks import read_parquet


def footer_readers() -> int:
    """Actors Ray Data's V2 parquet reader has started so far (alive or dead)."""
    return sum("FooterReader" in a["ActorClassName"] for a in ray._private.state.actors().values())


def test_read_parquet_starts_no_actor_and_leaves_rays_default(tmp_path):
    for day in range(12):
        part = tmp_path / f"date=2026-01-{day + 1:02d}"
        part.mkdir()
        frame = pd.DataFrame({"user_id": range(day * 10, day * 10 + 10), "x": [float(day)] * 10})
        frame.to_parquet(part / "part.parquet", index=False)
    context = ray.data.DataContext.get_current()
    defaults = (context.use_datasource_v2, context.enable_progress_bars)
    before = footer_readers()

    read = read_parquet(str(tmp_path), partitioning=None).to_pandas()

    assert footer_readers() == before
    assert (context.use_datasource_v2, context.enable_progress_bars) == defaults
    expected = pq.read_table(tmp_path, partitioning=None).to_pandas()
    pd.testing.assert_frame_equal(
        read.sort_values("user_id", ignore_index=True),
        expected.sort_values("user_id", ignore_index=True),
        check_dtype=False,  # Ray's frames are Arrow-backed
    )
