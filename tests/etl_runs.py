"""ETL runs that overlap, against whichever catalog a config names (local sqlite, or an
object store's REST catalog)."""

from __future__ import annotations

import threading

import pandas as pd

from app.data import etl, tables, warehouse
from app.data.etl import run_etl
from app.data.synthetic import generate, write_dataset

START = "2026-01-05"


def two_runs_at_once_lose_and_duplicate_no_row(cfg, tmp_path, monkeypatch) -> None:
    """Both runs merge against the same snapshot before either commits (a barrier holds the
    first commit of each); the catalog lets one commit and the other merges again against it."""
    a, b = generate(3000, seed=1, start=START), generate(3000, seed=2, start=START, first_user=10_000_000)
    write_dataset(iter([a]), tmp_path / "a.parquet")
    write_dataset(iter([pd.concat([a.iloc[:1000], b])]), tmp_path / "b.parquet")  # overlaps a
    run_etl(cfg, str(tmp_path / "a.parquet"))  # the table exists, with a's rows
    before = warehouse.read_table(cfg).num_rows
    write_dataset(iter([generate(2000, seed=3, start=START, first_user=20_000_000)]), tmp_path / "c.parquet")

    barrier, real_commit, conflicts, waited = (
        threading.Barrier(2, timeout=120),
        warehouse.commit_files,
        [],
        set(),
    )

    def commit_together(table, paths, properties):
        if properties["mlsys.etl-run"] not in waited:  # each run's first commit only
            waited.add(properties["mlsys.etl-run"])
            barrier.wait()
        try:
            return real_commit(table, paths, properties)
        except tables.CommitConflict:
            conflicts.append(properties["mlsys.etl-run"])
            raise

    monkeypatch.setattr(etl.warehouse, "commit_files", commit_together)
    reports = {}
    runs = [
        threading.Thread(target=lambda n=n: reports.setdefault(n, run_etl(cfg, str(tmp_path / n))))
        for n in ("b.parquet", "c.parquet")
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join(timeout=300)
    assert len(reports) == 2 and len(conflicts) == 1, (reports, conflicts)
    after = warehouse.read_table(cfg).to_pandas()
    assert not after.duplicated([cfg.dataset.entity, cfg.dataset.timestamp]).any()
    assert len(after) == before + sum(r.rows_written for r in reports.values())
    assert all(r.balanced() for r in reports.values())
    assert reports["c.parquet"].rows_written > 1500 and reports["b.parquet"].rows_written > 2000
    assert len(warehouse.open_table(cfg).snapshots()) == 3  # a, then b and c: one commit each
