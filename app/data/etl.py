"""ETL on Ray Data: raw files -> typed, validated, de-duplicated warehouse partitioned by date.

One streaming pass reads, cleans (`schema.clean_batch`) and writes every row to a staging area
partitioned by its destination: a date or `quarantine`. Then each date partition is merged
into the warehouse (de-duplicated on entity + timestamp, exact within a date because
duplicates share a timestamp) and swapped in with an atomic rename. Memory stays bounded by
Ray Data's streaming executor and one date partition per merge task.

Invariant, checked on every run: rows read = rows written + quarantined + duplicates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import ray

from app.cluster.connection import connect
from app.cluster.tasks import cpu_parallelism, cpus_per_task, read_parquet, run_tasks
from app.config import AppConfig, DatasetConfig
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
from app.errors import cause_line
from app.files import atomic_write_parquet, atomic_write_text

log = logging.getLogger(__name__)
WAREHOUSE_FILE = "part-0.parquet"
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


def _cleaned(paths: list[str], ds: DatasetConfig) -> ray.data.Dataset:
    """Every input row read and cleaned to the contract's Arrow schema (one stream per format)."""
    by_format: dict[str, list[str]] = {}
    for p in paths:
        by_format.setdefault(file_format(p), []).append(p)
    inverse = {clean: raw for raw, clean in ds.rename.items()}
    # The same CPU request for reading, cleaning and writing, so that clean -> write fuse into
    # one task and cleaned rows never wait in the object store. Read tasks: four per file (at
    # least four per core), where Ray Data would split the read into 200 blocks: each write
    # task then writes one file per date for a quarter of an input file instead of a sliver,
    # faster and in less memory at 10M rows (README, Performance).
    task_args = {"num_cpus": cpus_per_task()}
    clean_args = {"batch_size": BATCH_ROWS, "num_cpus": cpus_per_task(), "fn_kwargs": {"ds": ds}}
    datasets = []
    for fmt, files in by_format.items():
        read_args = {**task_args, "override_num_blocks": 4 * max(len(files), cpu_parallelism())}
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


def merge_partition(
    staged: list[str], target_dir: str, keys: list[str], schema: pa.Schema
) -> tuple[int, int]:
    """Merge staged rows of one date into its warehouse partition, atomically.

    Existing rows win over new copies, so re-running ETL on the same input writes nothing.
    Returns (rows added, duplicates dropped). All in Arrow, without a pandas round trip: the
    first row of each key (existing rows come first) by a group-by on the row number, then
    sorted by the keys.
    """
    new = pq.read_table(staged, schema=schema)
    existing = Path(target_dir) / WAREHOUSE_FILE
    old = pq.read_table(existing, schema=schema) if existing.exists() else new.slice(0, 0)
    combined = pa.concat_tables([old, new])
    combined = combined.append_column(_ROW, pa.array(np.arange(combined.num_rows)))
    first = combined.group_by(keys, use_threads=False).aggregate([(_ROW, "min")])[f"{_ROW}_min"]
    merged = combined.take(first).drop_columns([_ROW]).sort_by([(k, "ascending") for k in keys])
    duplicates = combined.num_rows - merged.num_rows
    added = merged.num_rows - old.num_rows
    if added:
        atomic_write_parquet(existing, merged)  # readers see the old partition or the new one, never half
    return added, duplicates


def _staged_partitions(staging: Path) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {}
    for d in sorted(staging.glob(f"{PART}=*")):
        files = sorted(str(f) for f in d.glob("*.parquet"))
        if files:
            parts[d.name.split("=", 1)[1]] = files
    return parts


def _move_quarantine(files: list[str], dest: Path) -> dict[str, int]:
    dest.mkdir(parents=True, exist_ok=True)
    reasons: Counter[str] = Counter()
    for f in files:
        reasons.update(pq.read_table(f, columns=[REASON]).column(0).to_pylist())
        shutil.move(f, dest / Path(f).name)
    return dict(reasons.most_common())


def run_etl(cfg: AppConfig, source: str | None = None) -> EtlReport:
    """Run ETL from `source` (default: dataset.source) into the warehouse; returns the report."""
    started = time.perf_counter()
    ds_cfg, storage = cfg.dataset, cfg.storage
    source = source or ds_cfg.source
    paths = resolve_inputs(source)
    check_inputs(paths, ds_cfg)
    connect(cfg.ray)  # only once the input is known to be usable
    with warehouse_lock(storage):
        return _etl(cfg, source, paths, started)


# One ETL run at a time writes the warehouse: two merges of the same date would each rewrite the
# partition from what they read, and the later rename would drop the earlier one's rows.
LOCK_WAIT_S = 1800.0


def warehouse_lock(storage) -> contextlib.AbstractContextManager:
    """The warehouse's writer lock (a file lock: across processes, and across nodes on a shared
    mount with working locks); waits up to LOCK_WAIT_S for another run to finish."""
    from filelock import FileLock, Timeout

    storage.warehouse_lock.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(storage.warehouse_lock, timeout=LOCK_WAIT_S)

    @contextlib.contextmanager
    def held():
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another ETL run is writing the warehouse: waiting for it")
            try:
                lock.acquire()
            except Timeout:
                raise DataError(
                    f"another ETL run has held the warehouse for {LOCK_WAIT_S:.0f} s "
                    f"({storage.warehouse_lock}); try again when it has finished"
                ) from None
        try:
            yield
        finally:
            lock.release()

    return held()


def _etl(cfg: AppConfig, source: str, paths: list[str], started: float) -> EtlReport:
    ds_cfg, storage = cfg.dataset, cfg.storage
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    report = EtlReport(run_id=run_id, source=source, files=len(paths))
    staging = storage.staging / run_id
    try:
        _cleaned(paths, ds_cfg).write_parquet(
            str(staging), partition_cols=[PART], ray_remote_args={"num_cpus": cpus_per_task()}
        )
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"reading {source} failed: {cause_line(exc)}") from None
    try:
        parts = _staged_partitions(staging)
        report.rows_read = sum(pq.ParquetFile(f).metadata.num_rows for fs in parts.values() for f in fs)
        if report.rows_read == 0:
            raise DataError(f"input {source} has no rows")
        quarantine_files = parts.pop(QUARANTINE, [])
        if quarantine_files:
            report.quarantined = _move_quarantine(quarantine_files, storage.quarantine / f"run={run_id}")
        schema = arrow_schema(ds_cfg, with_meta=False)
        keys = [ds_cfg.entity, ds_cfg.timestamp]
        results = run_tasks(
            merge_partition,
            [(files, str(storage.warehouse / f"date={day}"), keys, schema) for day, files in parts.items()],
        )
        report.rows_written = sum(added for added, _ in results)
        report.duplicates = sum(dup for _, dup in results)
        report.partitions = len(parts)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = round(time.perf_counter() - started, 2)
    if not report.balanced():  # a bug, never a data condition: refuse to report a lie
        raise RuntimeError(f"ETL row accounting does not balance: {report.to_dict()}")
    _write_report(report, storage.reports)
    return report


def _write_report(report: EtlReport, folder: Path) -> Path:
    return atomic_write_text(folder / f"etl-{report.run_id}.json", json.dumps(report.to_dict(), indent=2))


def read_warehouse(cfg: AppConfig) -> ray.data.Dataset:
    """The warehouse as a Ray Dataset (typed contract columns)."""
    if not any(cfg.storage.warehouse.glob(f"date=*/{WAREHOUSE_FILE}")):
        raise DataError(f"the warehouse {cfg.storage.warehouse} is empty: run `mlsys etl` first")
    return read_parquet(
        str(cfg.storage.warehouse), partitioning=None, schema=arrow_schema(cfg.dataset, with_meta=False)
    )
