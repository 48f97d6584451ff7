"""`mlsys predict` on Ray Data: files of raw rows scored by a registered model, at any size.

Read (csv and parquet, any pyarrow filesystem) -> `map_batches` on a pool of actors, each
building the model's Predictor once -> batches streamed back to this process, which splits
them into predictions and quarantine and appends each to parquet parts in a staging folder,
renamed into place at the end. Ray Data's streaming executor keeps a bounded number of blocks
in flight and this process holds one batch at a time, so memory does not grow with the input.
The parts are written here, not by Ray's workers, so a local output folder works on a cluster
too (a worker's local path would be on its own node).

Invariant, checked before anything is published: input rows = scored + quarantined.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.compute as pc
import ray

from app.batch.checks import Layout
from app.batch.inputs import CSV_PARSE, count_rows, csv_options, file_format, input_files, layout_of
from app.batch.output import PartWriter, check_output, staged
from app.batch.scoring import (
    REASON,
    check_batch,
    output_schema,
    prediction_columns,
    quarantine_columns,
    score_checked,
    split,
)
from app.cluster.connection import connect
from app.cluster.tasks import cpu_parallelism, read_parquet
from app.config import AppConfig
from app.data.schema import DataError
from app.errors import cause_line
from app.files import atomic_write_text
from app.model.bundle import ModelBundle
from app.model.predictor import Predictor
from app.registry.registry import CHAMPION, Registry, RegistryError

log = logging.getLogger(__name__)
BATCH_ROWS = 50_000  # rows per model call: vectorised pandas and torch, a few MB per batch
ROWS_PER_FILE = 1_000_000  # rows per output parquet part
PREDICTIONS, QUARANTINE, SUMMARY = "predictions", "quarantine", "summary.json"


@dataclass
class PredictReport:
    source: str
    output: str
    model_version: int
    files: int
    batch_size: int
    workers: int
    rows_in: int = 0
    scored: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    batches: int = 0  # batches streamed back to this process
    max_batch_rows: int = 0  # the largest of them: the memory this process needed at once
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds else 0.0

    def balanced(self) -> bool:
        return self.rows_in == self.scored + self.quarantined

    def to_dict(self) -> dict:
        return {**asdict(self), "rows_per_s": round(self.rows_per_s, 1)}

    def lines(self) -> list[str]:
        """The run in two or three lines, for the terminal."""
        out = [
            f"scored {self.scored:,} rows, quarantined {self.quarantined:,} (input {self.rows_in:,} = "
            f"scored + quarantined) with model version {self.model_version} in {self.seconds:.1f} s "
            f"({self.rows_per_s:,.0f} rows/s)",
            f"wrote {self.output}/{PREDICTIONS}/, {QUARANTINE}/ and {SUMMARY}",
        ]
        if self.reasons:
            top = ", ".join(f"{reason} ({n:,})" for reason, n in list(self.reasons.items())[:3])
            out.append(f"quarantine reasons: {top}" + (", ..." if len(self.reasons) > 3 else ""))
        return out


class Scorer:
    """One actor of the pool: builds its Predictor once, then scores every batch it is given."""

    def __init__(self, bundle: ModelBundle, version: int, cfg: AppConfig, layout: Layout, now: datetime):
        self.predictor = Predictor.from_bundle(bundle, version=version, threshold=cfg.serve.threshold)
        self.cfg, self.layout, self.now = cfg, layout, now

    def __call__(self, checked):
        return score_checked(checked, self.predictor, self.cfg, self.layout, now=self.now)


def load_model(cfg: AppConfig, ref: str | int) -> tuple[ModelBundle, int]:
    """The bundle and version behind a registry alias or version number."""
    registry = Registry(cfg)
    version = int(ref) if str(ref).isdigit() else registry.alias_version(str(ref))
    if version is None:
        raise RegistryError(f"model {registry.name!r} has no alias {ref!r}")
    return registry.load(version), version


def read_inputs(paths: list[str], cfg: AppConfig, layout: Layout) -> ray.data.Dataset:
    """Every input row, one stream per format (csv columns as text: see `inputs.text_columns`)."""
    by_format: dict[str, list[str]] = {}
    for p in paths:
        by_format.setdefault(file_format(p), []).append(p)
    parts = []
    if "csv" in by_format:
        options = csv_options(cfg.dataset, layout)
        csvs = by_format["csv"]
        parts.append(
            ray.data.read_csv(csvs, partitioning=None, parse_options=CSV_PARSE, convert_options=options)
        )
    if "parquet" in by_format:
        parts.append(read_parquet(by_format["parquet"], partitioning=None))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def scored_dataset(
    read_ds: ray.data.Dataset, scorer_args: dict, *, batch_size: int, workers: int
) -> ray.data.Dataset:
    """The read rows checked block by block (one block has one file's column types, which no
    batch may mix), then scored in batches of `batch_size` rows by a pool of 1..`workers`
    Scorer actors (all started at once)."""
    fixed = {"cfg": scorer_args["cfg"], "layout": scorer_args["layout"]}
    checked_ds = read_ds.map_batches(check_batch, batch_size=None, batch_format="pandas", fn_kwargs=fixed)
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=workers, initial_size=workers)
    with warnings.catch_warnings():
        # Ray 2.60 has no other way to set an actor pool's restarts, and deprecates this one.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return checked_ds.map_batches(
            Scorer,
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=pool,
            fn_constructor_kwargs=scorer_args,
            num_cpus=1,
            # A restartable actor whose constructor arguments Ray Data keeps in the object store
            # (it always does) makes Ray print an error line on the terminal as it starts
            # (ray#53727). A lost actor fails the run instead: nothing is published, and the
            # run can be repeated.
            max_restarts=0,
        )


def _stream(scored_ds: ray.data.Dataset, folder: Path, schema, layout: Layout, report: PredictReport) -> None:
    """Write each scored batch's rows to predictions or quarantine as it arrives."""
    predictions = PartWriter(
        folder / PREDICTIONS, schema_of(schema, prediction_columns(layout)), ROWS_PER_FILE
    )
    quarantine = PartWriter(folder / QUARANTINE, schema_of(schema, quarantine_columns(layout)), ROWS_PER_FILE)
    reasons: Counter[str] = Counter()
    for table in scored_ds.iter_batches(batch_size=report.batch_size, batch_format="pyarrow"):
        good, bad = split(table, layout)
        predictions.write(good)
        quarantine.write(bad)
        if bad.num_rows:
            counts = pc.value_counts(bad[REASON]).to_pylist()
            reasons.update({c["values"]: c["counts"] for c in counts})
        report.batches += 1
        report.max_batch_rows = max(report.max_batch_rows, table.num_rows)
    predictions.close()
    quarantine.close()
    report.scored, report.quarantined = predictions.rows, quarantine.rows
    report.reasons = dict(reasons.most_common())


def schema_of(schema, names: list[str]):
    return schema.empty_table().select(names).schema


def predict_files(
    cfg: AppConfig,
    *,
    source: str,
    output: str,
    ref: str | int = CHAMPION,
    keys: tuple[str, ...] = (),
    batch_size: int = BATCH_ROWS,
    workers: int | None = None,
) -> PredictReport:
    """Score every row of `source` with the model behind `ref`; write the run to `output`."""
    out_dir = check_output(output)
    paths = input_files(source)
    layout = layout_of(paths, cfg.dataset, keys)
    bundle, version = load_model(cfg, ref)
    connect(cfg.ray)  # only once the input, the output and the model are known to be usable
    workers = workers or cpu_parallelism()
    report = PredictReport(source, str(out_dir), version, len(paths), batch_size, workers)
    now = datetime.now(timezone.utc)  # rows without a timestamp are scored as of the run's start
    args = {"bundle": bundle, "version": version, "cfg": cfg, "layout": layout, "now": now}
    started = time.perf_counter()
    with staged(out_dir) as folder:
        scored_ds = scored_dataset(
            read_inputs(paths, cfg, layout), args, batch_size=batch_size, workers=workers
        )
        try:
            _stream(scored_ds, folder, output_schema(cfg, layout), layout, report)
            report.rows_in = count_rows(paths, cfg.dataset, layout)
        except Exception as exc:
            raise DataError(f"reading {source} failed: {cause_line(exc)}") from None
        report.seconds = round(time.perf_counter() - started, 2)
        if not report.balanced():  # a bug, never a data condition: publish nothing
            raise RuntimeError(f"batch scoring's row accounting does not balance: {report.to_dict()}")
        atomic_write_text(folder / SUMMARY, json.dumps(report.to_dict(), indent=2))
    return report
