from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.features.latest import latest_rows


def at(day: int, hour: int = 0) -> pd.Timestamp:
    return pd.Timestamp(datetime(2026, 1, day, hour, tzinfo=timezone.utc))


def write(path, rows):
    frame = pd.DataFrame(rows, columns=["user_id", "event_timestamp", "age"])
    frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def test_the_newest_row_per_entity_inside_the_window_both_ends_included(tmp_path):
    files = [
        write(
            tmp_path / "date=2026-01-01" / "p.parquet", [(1, at(1), 10.0), (2, at(1), 20.0), (3, at(1), 30.0)]
        ),
        write(tmp_path / "date=2026-01-02" / "p.parquet", [(1, at(2), 11.0), (2, at(2, 5), 21.0)]),
        write(tmp_path / "date=2026-01-03" / "p.parquet", [(1, at(3), 12.0), (4, at(3, 1), 40.0)]),
    ]
    got = latest_rows(files, entity="user_id", timestamp="event_timestamp", start=at(1, 1), end=at(3))
    # user 1: day 3 is the end, included; 2: day 2; 3: only before the start; 4: after the end.
    assert got[["user_id", "age"]].values.tolist() == [[1, 12.0], [2, 21.0]]
    everything = latest_rows(
        reversed(files), entity="user_id", timestamp="event_timestamp", start=at(1), end=at(4)
    )
    assert dict(everything[["user_id", "age"]].values.tolist()) == {1: 12.0, 2: 21.0, 3: 30.0, 4: 40.0}


def test_an_empty_window_is_an_empty_frame(tmp_path):
    f = write(tmp_path / "date=2026-01-01" / "p.parquet", [(1, at(1), 10.0)])
    assert latest_rows([f], entity="user_id", timestamp="event_timestamp", start=at(2), end=at(3)).empty
