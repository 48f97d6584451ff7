"""ETL on a real local Ray: row conservation, quarantine, idempotence and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from app.data import warehouse
from app.data.etl import run_etl
from app.data.inputs import json_lines_frame
from app.data.schema import RAW, REASON, DataError
from app.data.synthetic import generate, generate_chunks, write_dataset
from tests.configs import make_config
from tests.etl_runs import two_runs_at_once_lose_and_duplicate_no_row

pytestmark = pytest.mark.integration
START = "2026-01-05"


def _warehouse(cfg) -> pd.DataFrame:
    return warehouse.read_table(cfg).to_pandas()


def _snapshots(cfg) -> int:
    """How many commits the warehouse has had (0: none, or no table yet)."""
    try:
        return len(warehouse.open_table(cfg, create=False).snapshots())
    except DataError:
        return 0


def _quarantine(cfg) -> pd.DataFrame:
    return pq.read_table(str(cfg.storage.path(cfg.storage.quarantine))).to_pandas()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_rows_are_conserved_and_bad_rows_quarantined(tmp_path, fmt):
    cfg = make_config(tmp_path)
    write_dataset(generate_chunks(6000, seed=1, start=START, chunk_rows=2000), tmp_path / "raw", fmt)
    report = run_etl(cfg, str(tmp_path / "raw"))

    assert report.rows_read == 6000
    assert report.rows_read == report.rows_written + report.rows_quarantined + report.duplicates
    assert report.duplicates > 0 and report.rows_quarantined > 0
    wh = _warehouse(cfg)
    assert len(wh) == report.rows_written
    assert not wh.duplicated(["user_id", "event_timestamp"]).any()
    assert wh["age"].between(0, 120).all()
    q = _quarantine(cfg)
    assert len(q) == report.rows_quarantined
    assert q[REASON].notna().all()
    assert all("user_id" in json.loads(raw) for raw in q[RAW])
    saved = json.loads(next(cfg.storage.path(cfg.storage.reports).glob("etl-*.json")).read_text())
    assert saved["rows_written"] == report.rows_written
    assert not any(cfg.storage.path(cfg.storage.staging).iterdir()), "staging is cleaned up"


def test_rerun_writes_nothing_new_and_new_data_is_merged(tmp_path):
    cfg = make_config(tmp_path)
    write_dataset(iter([generate(3000, seed=1, start=START)]), tmp_path / "a.parquet")
    first = run_etl(cfg, str(tmp_path / "a.parquet"))
    before = _warehouse(cfg)

    again = run_etl(cfg, str(tmp_path / "a.parquet"))
    assert again.rows_written == 0
    assert again.duplicates == first.rows_written + first.duplicates
    pd.testing.assert_frame_equal(_warehouse(cfg), before)

    more = generate(2000, seed=2, start=START, first_user=10_000_000)
    write_dataset(iter([more]), tmp_path / "b.csv")
    added = run_etl(cfg, str(tmp_path / "b.csv"))
    assert len(_warehouse(cfg)) == len(before) + added.rows_written
    assert added.rows_written > 1800


def test_glob_input(tmp_path):
    cfg = make_config(tmp_path)
    paths = write_dataset(
        generate_chunks(3000, seed=1, start=START, chunk_rows=1000), tmp_path / "raw", "csv"
    )
    report = run_etl(cfg, str(tmp_path / "raw" / "part-0000[01].csv"))
    assert report.files == 2
    assert report.rows_read == sum(len(pd.read_csv(p)) for p in paths[:2])


def test_wrong_column_type_is_quarantined_not_a_crash(tmp_path):
    cfg = make_config(tmp_path)
    df = generate(500, seed=1, start=START)
    df["age"] = "thirty"
    write_dataset(iter([df]), tmp_path / "x.csv")
    report = run_etl(cfg, str(tmp_path / "x.csv"))
    assert report.rows_written == 0
    assert report.quarantined.get("age: not a number", 0) > 400


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: _write(p / "bad.parquet", "not parquet"), "not a readable parquet"),
        (lambda p: _write(p / "empty.csv", ""), "the file is empty"),
        (lambda p: _write(p / "cols.csv", "user_id,age\n1,2\n"), "missing required column"),
        (lambda p: _write(p / "notes.txt", "hi").parent, "holds no csv, parquet or jsonl"),
    ],
)
def test_bad_input_is_a_clear_error_and_touches_nothing(tmp_path, make_input, message):
    cfg = make_config(tmp_path)
    write_dataset(iter([generate(1000, seed=1, start=START)]), tmp_path / "good.parquet")
    run_etl(cfg, str(tmp_path / "good.parquet"))
    before = _warehouse(cfg)
    src = tmp_path / "in"
    src.mkdir()
    with pytest.raises(DataError, match=message):
        run_etl(cfg, str(make_input(src)))
    pd.testing.assert_frame_equal(_warehouse(cfg), before)


def test_corrupt_csv_body_fails_cleanly(tmp_path):
    cfg = make_config(tmp_path)
    good = generate(300, seed=1, start=START)
    text = good.to_csv(index=False) + "1,2,3\n" + "x" * 10 + "\n"  # ragged rows
    (tmp_path / "ragged.csv").write_text(text)
    with pytest.raises(DataError, match="reading .* failed"):
        run_etl(cfg, str(tmp_path / "ragged.csv"))
    assert _snapshots(cfg) == 0, "nothing is committed"
    assert not any(cfg.storage.path(cfg.storage.staging).iterdir())


BIG = 2**53  # float64 rounds BIG + 1 to BIG (a "duplicate"): ETL must never go through it
# id as written -> the reason it is quarantined (None: it lands in the warehouse)
IDS = {
    BIG: None,
    BIG + 1: None,
    BIG + 2: None,
    "inf": "user_id: infinite id",
    2**63: "user_id: id outside the int64 range",
    1.5: "user_id: not an integer id",
}


def _write_ids(path, fmt):
    rows = [
        {
            "user_id": i,
            "event_timestamp": "2026-01-05T10:00:00",
            "label": 1,
            "age": 30,
            "income": 100.0,
            "score": 0.5,
            "country": "US",
            "gender": "F",
        }
        for i in IDS
    ]
    if fmt == "jsonl":  # ids as JSON numbers (and one string), as an export writes them
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    df = pd.DataFrame(rows).astype({"user_id": str})  # csv text; parquet: a string column
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_big_ids_stay_exact_and_bad_ids_are_quarantined(tmp_path, fmt):
    cfg = make_config(tmp_path)
    _write_ids(tmp_path / f"ids.{fmt}", fmt)
    report = run_etl(cfg, str(tmp_path / f"ids.{fmt}"))

    # One timestamp: had two big ids collided, one would be dropped as a duplicate.
    assert sorted(_warehouse(cfg)["user_id"].tolist()) == [BIG, BIG + 1, BIG + 2]
    assert report.duplicates == 0
    assert report.rows_read == len(IDS) == report.rows_written + report.rows_quarantined
    q = _quarantine(cfg)
    got = {json.loads(raw)["user_id"]: reason for raw, reason in zip(q[RAW], q[REASON], strict=True)}
    assert got == {str(i): reason for i, reason in IDS.items() if reason}


def test_json_batches_that_arrow_would_make_float_are_parsed_exactly():
    exact = json_lines_frame([json.dumps({"id": BIG + 1}), json.dumps({"id": BIG + 2})], "id")
    assert exact["id"].tolist() == [BIG + 1, BIG + 2]  # Arrow's fast path: int64
    mixed = json_lines_frame(
        [json.dumps({"id": BIG + 1}), json.dumps({"id": 1.5}), "", '{"id": Infinity}'], "id"
    )
    assert mixed["id"].tolist()[:2] == [BIG + 1, 1.5] and mixed["id"].iloc[2] == float("inf")
    with pytest.raises(ValueError, match="not valid JSON"):
        json_lines_frame(['{"id": 1}', '{"id": '], "id")


def test_two_etl_runs_at_once_lose_and_duplicate_no_row(tmp_path, monkeypatch):
    two_runs_at_once_lose_and_duplicate_no_row(make_config(tmp_path), tmp_path, monkeypatch)


def test_a_killed_etl_run_leaves_the_warehouse_as_it_was_or_complete(tmp_path):
    """The writer is killed once its first data file is on disk, before or during its commit:
    the table is at the earlier snapshot or holds the whole run, never part of it; the run
    done again completes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import ray

    cfg = make_config(tmp_path)
    write_dataset(iter([generate(2000, seed=1, start=START)]), tmp_path / "a.parquet")
    write_dataset(
        generate_chunks(20000, seed=2, start=START, chunk_rows=5000, first_user=10_000_000),
        tmp_path / "b",
        "parquet",
    )
    run_etl(cfg, str(tmp_path / "a.parquet"))
    before = _warehouse(cfg)
    data = cfg.storage.warehouse / "data"
    written_before = set(data.rglob("*.parquet"))
    script = (
        "import sys; from app.data.etl import run_etl; from tests.configs import make_config;"
        "from pathlib import Path;"
        "run_etl(make_config(Path(sys.argv[1]), ray={'address': sys.argv[2]}), sys.argv[3])"
    )
    address = ray.get_runtime_context().gcs_address
    root = Path(__file__).parents[2]
    writer = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), address, str(tmp_path / "b")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        deadline = time.monotonic() + 240
        while not set(data.rglob("*.parquet")) - written_before and writer.poll() is None:
            assert time.monotonic() < deadline, "the writer wrote no data file"
            time.sleep(0.01)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    committed = _snapshots(cfg)
    seen = _warehouse(cfg)
    ref = make_config(tmp_path / "ref")  # the same two runs, never interrupted
    run_etl(ref, str(tmp_path / "a.parquet"))
    run_etl(ref, str(tmp_path / "b"))
    if committed == 1:
        pd.testing.assert_frame_equal(seen, before, obj="the earlier snapshot")
    else:
        assert committed == 2
        pd.testing.assert_frame_equal(seen, _warehouse(ref), obj="the whole run")
    again = run_etl(cfg, str(tmp_path / "b"))
    assert again.balanced() and (again.rows_written == 0) == (committed == 2)
    pd.testing.assert_frame_equal(_warehouse(cfg), _warehouse(ref))
