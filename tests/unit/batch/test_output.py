"""A batch run's output: parquet parts of bounded size, and a folder that appears whole or not at all."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.batch.output import PartWriter, check_output, staged
from app.data.schema import DataError

SCHEMA = pa.schema([("id", pa.int64()), ("score", pa.float64())])


def rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": list(range(start, start + n)), "score": [0.5] * n}, schema=SCHEMA)


def test_parts_hold_at_most_their_rows_and_keep_every_row_in_order(tmp_path):
    writer = PartWriter(tmp_path / "p", SCHEMA, rows_per_file=3)
    for start, n in [(0, 2), (2, 4), (6, 1)]:
        writer.write(rows(start, n))
    writer.close()
    assert writer.rows == 7 and [f.name for f in writer.files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert [pq.read_metadata(f).num_rows for f in writer.files] == [3, 3, 1]
    assert pq.read_table(tmp_path / "p")["id"].to_pylist() == list(range(7))


def test_no_rows_still_leave_a_readable_empty_part(tmp_path):
    writer = PartWriter(tmp_path / "q", SCHEMA, rows_per_file=10)
    writer.close()
    table = pq.read_table(tmp_path / "q")
    assert table.num_rows == 0 and table.schema == SCHEMA


def test_the_output_must_be_a_new_or_empty_local_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output(str(tmp_path / "empty")) == tmp_path / "empty"
    assert check_output(str(tmp_path / "new")) == tmp_path / "new"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "file").write_text("x")
    for bad, words in [("full", "not empty"), ("file", "is a file")]:
        with pytest.raises(DataError, match=words):
            check_output(str(tmp_path / bad))
    with pytest.raises(DataError, match="local folder"):
        check_output("s3://bucket/out")


def test_a_staged_run_appears_whole_when_it_ends_and_not_at_all_when_it_fails(tmp_path):
    out = tmp_path / "run"
    with staged(out) as folder:
        (folder / "a.txt").write_text("done")
        assert not out.exists()  # nothing visible while the run writes
    assert (out / "a.txt").read_text() == "done"

    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError), staged(failed) as folder:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("the run broke")
    assert not failed.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left behind


def test_a_staged_run_takes_the_place_of_an_empty_folder(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with staged(out) as folder:
        (folder / "a.txt").write_text("done")
    assert (out / "a.txt").exists()
