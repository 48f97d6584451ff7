"""ETL on Ray Data: raw files -> typed, validated, de-duplicated warehouse (an Iceberg table).

One streaming pass reads, cleans (`schema.clean_batch`) and writes every row to a staging area
partitioned by its destination: a date or `quarantine`. Then one task per date writes the rows
the warehouse lacks (de-duplicated on entity + timestamp, exact within a date because
duplicates share a timestamp) and the driver commits them all as one Iceberg snapshot: a
reader sees the warehouse before the run or after it. Concurrent runs need no lock: the one
whose commit loses merges again against the winner's rows. Memory stays bounded by Ray
Data's streaming executor and one date per merge task.

Invariant, checked on every run: rows read = rows written + quarantined + duplicates.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import ray

from app.cluster.connection import connect
from app.cluster.tasks import cpu_parallelism, cpus_per_task, read_parquet, run_tasks
from app.config import AppConfig, DatasetConfig, StorageConfig
from app.data import state, tables, warehouse
from app.data.inputs import check_inputs, file_format, json_lines_frame, resolve_inputs
from app.data.schema import (
    PART,
    QUARANTINE,
    REASON,
    DataError,
    arrow_schema,
    clean_batch,
    to_arrow,
)
from app.data.shared_files import SharedFiles, shared_files
from app.errors import cause_line
from app.files import atomic_path

log = logging.getLogger(__name__)
_ROW = "__mlsys_row"  # a staged row's number while merging, never written
BATCH_ROWS = 100_000  # large enough for vectorised pandas, small enough to stream


@dataclass
class EtlReport:
    run_id: str
    source: str
    files: int
    rows_read: int = 0
    rows_written: int = 0
    duplicates: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    partitions: int = 0
    seconds: float = 0.0

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def balanced(self) -> bool:
        return self.rows_read == self.rows_written + self.rows_quarantined + self.duplicates

    def to_dict(self) -> dict:
        return {**asdict(self), "rows_quarantined": self.rows_quarantined}


# ---------------------------------------------------------------- the Ray Data pass


def _cleaned(paths: list[str], ds: DatasetConfig, *, blocks_per_file: int = 4) -> ray.data.Dataset:
    """Every input row read and cleaned to the contract's Arrow schema (one stream per format)."""
    by_format: dict[str, list[str]] = {}
    for p in paths:
        by_format.setdefault(file_format(p), []).append(p)
    inverse = {clean: raw for raw, clean in ds.rename.items()}
    # The same CPU request for reading, cleaning and writing, so that clean -> write fuse into
    # one task and cleaned rows never wait in the object store. Read tasks: four per file (at
    # least four per core), where Ray Data would split the read into 200 blocks: each write
    # task then writes one file per date for a quarter of an input file instead of a sliver,
    # faster and in less memory at 10M rows (README, Performance). Staged on an object store,
    # every file is a request of its own: one block per file there writes a quarter of the
    # files (2,240 objects for 1M rows in 10 files over 56 days at four).
    task_args = {"num_cpus": cpus_per_task()}
    clean_args = {"batch_size": BATCH_ROWS, "num_cpus": cpus_per_task(), "fn_kwargs": {"ds": ds}}
    datasets = []
    for fmt, files in by_format.items():
        read_args = {**task_args, "override_num_blocks": blocks_per_file * max(len(files), cpu_parallelism())}
        if fmt == "csv":
            # Read every contract column as text: a stray "abc" in a numeric column must be
            # quarantined, not abort pyarrow's type inference; ids stay exact digits.
            types = {inverse.get(c, c): pa.string() for c in ds.columns}
            read_ds = ray.data.read_csv(
                files, convert_options=pacsv.ConvertOptions(column_types=types), **read_args
            )
        elif fmt == "parquet":
            read_ds = read_parquet(files, **read_args)
        else:  # lines of text, parsed by _clean_json_lines so that no id goes through float64
            read_ds = ray.data.read_text(files, **read_args)
            datasets.append(read_ds.map_batches(_clean_json_lines, batch_format="pyarrow", **clean_args))
            continue
        datasets.append(read_ds.map_batches(_clean_to_arrow, batch_format="pandas", **clean_args))
    return datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])


def _clean_json_lines(batch: pa.Table, ds: DatasetConfig) -> pa.Table:
    entity = {clean: raw for raw, clean in ds.rename.items()}.get(ds.entity, ds.entity)
    return _clean_to_arrow(json_lines_frame(batch.column("text").to_pylist(), entity), ds)


def _clean_to_arrow(batch: pd.DataFrame, ds: DatasetConfig) -> pa.Table:
    return to_arrow(clean_batch(batch, ds), ds)


# ---------------------------------------------------------------- merge into the warehouse


def merge_day(
    staged: list[str],
    existing: list[str],
    out_file: str,
    keys: list[str],
    schema: pa.Schema,
    store: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Write the staged rows of one day that the warehouse lacks to `out_file`.

    Existing rows win over new copies, so re-running ETL on the same input writes nothing; of
    several staged copies of a key the first is kept. Only the existing files' key columns are
    read. `existing` and `out_file` are table locations (a path, file:// or s3://), reached
    with the catalog's properties `store`. Returns (rows added, duplicates dropped); `out_file`
    is written only when rows are added, and joins the table only when the driver commits it.
    """
    staged_fs, staged_paths = tables.file_system(store or {}, staged)
    new = pq.read_table(staged_paths, schema=schema, filesystem=staged_fs)
    new = new.append_column(_ROW, pa.array(np.arange(new.num_rows)))
    first = new.group_by(keys, use_threads=False).aggregate([(_ROW, "min")])[f"{_ROW}_min"]
    fresh = new.take(first)
    if existing:
        fs, paths = tables.file_system(store or {}, existing)
        old_keys = pq.read_table(paths, columns=keys, schema=schema, filesystem=fs)
        fresh = fresh.join(old_keys, keys, join_type="left anti", use_threads=False)
    fresh = fresh.drop_columns([_ROW]).sort_by([(k, "ascending") for k in keys]).select(schema.names)
    if fresh.num_rows:
        fs, (path,) = tables.file_system(store or {}, [out_file])
        if fs.type_name == "local":  # on disk before the commit names it; an object's PUT is durable
            with atomic_path(path) as tmp:
                pq.write_table(fresh, tmp)
        else:
            pq.write_table(fresh, path, filesystem=fs)
    return fresh.num_rows, new.num_rows - fresh.num_rows


def _move_quarantine(files: SharedFiles, staged: list[str], dest: str) -> dict[str, int]:
    reasons: Counter[str] = Counter()
    for f in staged:
        reasons.update(files.read_table(f, columns=[REASON]).column(0).to_pylist())
        files.move(f, f"{dest}/{f.rsplit('/', 1)[-1]}")
    return dict(reasons.most_common())


def run_etl(cfg: AppConfig, source: str | None = None) -> EtlReport:
    """Run ETL from `source` (default: dataset.source) into the warehouse; returns the report."""
    started = time.perf_counter()
    source = source or cfg.dataset.source
    paths = resolve_inputs(source)
    check_inputs(paths, cfg.dataset)
    warehouse.open_table(cfg)  # an unusable catalog or store fails here, before anything is written
    shared_files(cfg.storage).check()  # and so does the store of the staging and quarantine
    connect(cfg.ray)  # only once the input and the warehouse are known to be usable
    return _etl(cfg, source, paths, started)


# A run whose commit lost to another writer's merges again against that writer's rows; beyond
# this many attempts the warehouse is too busy and the run gives up, having committed nothing.
COMMIT_ATTEMPTS = 8


def _etl(cfg: AppConfig, source: str, paths: list[str], started: float) -> EtlReport:
    ds_cfg, storage = cfg.dataset, cfg.storage
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    report = EtlReport(run_id=run_id, source=source, files=len(paths))
    files = shared_files(storage)  # staged by tasks on any node, read by this one
    staging = files.uri(storage.staging, run_id)
    try:
        _cleaned(paths, ds_cfg, blocks_per_file=1 if files.remote else 4).write_parquet(
            files.path(staging),
            filesystem=files.fs,
            partition_cols=[PART],
            ray_remote_args={"num_cpus": cpus_per_task()},
        )
    except Exception as exc:
        files.remove(staging)
        raise DataError(f"reading {source} failed: {cause_line(exc)}") from None
    try:
        parts = files.partitions(staging, PART)
        report.rows_read = sum(md.num_rows for md in files.footers([f for fs in parts.values() for f in fs]))
        if report.rows_read == 0:
            raise DataError(f"input {source} has no rows")
        quarantine_files = parts.pop(QUARANTINE, [])
        if quarantine_files:
            dest = files.uri(storage.quarantine, f"run={run_id}")
            report.quarantined = _move_quarantine(files, quarantine_files, dest)
        report.rows_written, report.duplicates = _merge_and_commit(cfg, parts, run_id)
        report.partitions = len(parts)
    finally:
        files.remove(staging)
    report.seconds = round(time.perf_counter() - started, 2)
    if not report.balanced():  # a bug, never a data condition: refuse to report a lie
        raise RuntimeError(f"ETL row accounting does not balance: {report.to_dict()}")
    _write_report(report, storage)
    return report


def _merge_and_commit(cfg: AppConfig, parts: dict[str, list[str]], run_id: str) -> tuple[int, int]:
    """Merge every staged day against the warehouse's current snapshot and commit the new rows
    in one snapshot; merge again if another writer committed first. Returns (added, duplicates)."""
    schema = arrow_schema(cfg.dataset, with_meta=False)
    keys = [cfg.dataset.entity, cfg.dataset.timestamp]
    store = tables.catalog_properties(cfg.storage)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = warehouse.open_table(cfg)
        existing = warehouse.day_files(table)
        out = {day: warehouse.data_file(table, day, f"{run_id}-{attempt}") for day in parts}
        results = run_tasks(
            merge_day,
            [(files, existing.get(day, []), out[day], keys, schema, store) for day, files in parts.items()],
        )
        written = [out[day] for day, (added, _) in zip(parts, results, strict=True) if added]
        added, duplicates = sum(a for a, _ in results), sum(d for _, d in results)
        if not written:
            return 0, duplicates  # nothing new: no commit, no snapshot
        try:
            warehouse.commit_files(table, written, {"mlsys.etl-run": run_id, "mlsys.rows-added": str(added)})
            return added, duplicates
        except tables.CommitConflict:
            fs, paths = tables.file_system(store, written)
            for path in paths:  # never part of the table: tidied, not needed for correctness
                fs.delete_file(path)
            log.info("another ETL run committed to the warehouse first: merging against its rows")
    raise DataError(
        f"the warehouse {warehouse.where(cfg)} changed under this run {COMMIT_ATTEMPTS} times; "
        "nothing was committed: run ETL again"
    )


def _write_report(report: EtlReport, storage: StorageConfig) -> None:
    state.put_json(
        state.state_store(storage), f"{storage.reports}/etl-{report.run_id}.json", report.to_dict()
    )
