"""The warehouse merge of one day, against the same merge done with pandas."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.data.etl import merge_day

SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("ts", pa.int64()), ("income", pa.float64()), ("c", pa.string())]
)
KEYS = ["user_id", "ts"]


def staged(tmp_path, name: str, rows: list[tuple]) -> str:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(
        pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in rows], SCHEMA), path
    )
    return str(path)


def pandas_merge(frames: list[pd.DataFrame]) -> pd.DataFrame:
    combined = pd.concat(frames, ignore_index=True)
    return combined.drop_duplicates(KEYS, keep="first").sort_values(KEYS).reset_index(drop=True)


def test_a_merge_keeps_the_first_copy_of_each_key_sorted_and_a_rerun_writes_nothing(tmp_path):
    first = [(3, 10, 1.0, "a"), (1, 5, 2.0, None), (3, 10, 9.0, "dup"), (2, 7, None, "b")]
    second = [(1, 5, 7.0, "late"), (0, 1, 4.0, "c"), (0, 1, 5.0, "c2")]
    a, b = staged(tmp_path, "a", first), staged(tmp_path, "b", second)
    out = tmp_path / "day=2026-01-05" / "run-1.parquet"

    assert merge_day([a, b], [], str(out), KEYS, SCHEMA) == (4, 3)
    written = pq.read_table(out).to_pandas()
    expected = pandas_merge([pq.read_table(f).to_pandas() for f in (a, b)])
    pd.testing.assert_frame_equal(written, expected)

    again = tmp_path / "day=2026-01-05" / "run-2.parquet"
    assert merge_day([a, b], [str(out)], str(again), KEYS, SCHEMA) == (0, 7)  # all already there
    assert not again.exists()


def test_existing_rows_win_over_new_copies_and_only_new_rows_are_written(tmp_path):
    old = tmp_path / "day" / "old.parquet"
    merge_day([staged(tmp_path, "old", [(1, 5, 1.0, "old"), (2, 5, 1.0, "old")])], [], str(old), KEYS, SCHEMA)
    new = staged(tmp_path, "new", [(1, 5, 2.0, "new"), (1, 6, 3.0, "new"), (2, 5, 0.0, "new")])
    out = tmp_path / "day" / "new.parquet"
    assert merge_day([new], [str(old)], str(out), KEYS, SCHEMA) == (1, 2)
    assert pq.read_table(out).to_pylist() == [{"user_id": 1, "ts": 6, "income": 3.0, "c": "new"}]
    everything = pq.read_table([str(old), str(out)]).to_pandas()
    expected = pandas_merge([pq.read_table(f).to_pandas() for f in (str(old), new)])
    pd.testing.assert_frame_equal(everything.sort_values(KEYS).reset_index(drop=True), expected)
