"""The traffic log: one record per prediction and per feedback, as hourly parquet files.

Pure functions and a small accumulator, used by the monitor actor: writing a batch of
records (atomically: a temporary file renamed into place), reading them back after a
restart, and the per-variant experiment counts with the feedback join. A record's
`request_id` makes re-delivery idempotent, and a feedback's join to its prediction is what
turns the log into training data.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.files import atomic_write_parquet
from app.monitoring.abtest import VariantStats

PREDICTIONS, FEEDBACK = "predictions", "feedback"
SAMPLE = 20_000  # recent latencies / scored outcomes kept per variant for percentiles and AUC


def write_records(root: Path, kind: str, records: list[dict]) -> list[Path]:
    """Append records under `<root>/<kind>/hour=.../`; each file appears whole or not at all."""
    frame = pd.DataFrame.from_records(records)
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
    written = []
    for hour, part in frame.groupby(frame["logged_at"].dt.strftime("hour=%Y-%m-%dT%H")):
        name = f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        written.append(atomic_write_parquet(root / kind / str(hour) / name, table))
    return written


def read_records(root: Path, kind: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Every persisted record of a kind (empty frame if none), de-duplicated by request_id."""
    files = sorted((root / kind).glob("hour=*/part-*.parquet"))
    if not files:
        return pd.DataFrame(columns=columns or [])
    frames = []
    for f in files:
        table = pq.read_table(f)
        keep = [c for c in columns if c in table.column_names] if columns else None
        frames.append(table.select(keep).to_pandas() if keep else table.to_pandas())
    frame = pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates("request_id", keep="first").reset_index(drop=True)


class ExperimentCounts:
    """Per-(experiment, variant) counts with the feedback join, in bounded memory.

    Predictions are remembered by request_id (the most recent `capacity`) so a feedback can
    find its variant; a feedback that arrives before its prediction waits in `pending`.
    """

    def __init__(self, capacity: int = 200_000):  # ~50 MB; feedback older than that is still persisted
        self.capacity = capacity
        self.stats: dict[tuple[str, str], VariantStats] = {}
        self.predictions: OrderedDict[str, tuple[str, str, int, float]] = OrderedDict()
        self.labelled: set[str] = set()
        self.pending: OrderedDict[str, int] = OrderedDict()

    def _variant(self, experiment: str, variant: str) -> VariantStats:
        if (experiment, variant) not in self.stats:
            self.stats[experiment, variant] = VariantStats(
                latency_ms=deque(maxlen=SAMPLE), scores=deque(maxlen=SAMPLE), labels=deque(maxlen=SAMPLE)
            )
        return self.stats[experiment, variant]

    def add_prediction(self, rec: dict) -> bool:
        """Count one prediction record; False if its request_id was seen before."""
        rid = rec["request_id"]
        if rid in self.predictions:
            return False
        s = self._variant(rec["experiment"], rec["variant"])
        if rec["status"] != "ok":
            s.errors += 1
            return True
        s.requests += 1
        s.latency_ms.append(float(rec["latency_ms"]))
        if rec["model_version"] not in s.model_versions:
            s.model_versions.append(int(rec["model_version"]))
        self.predictions[rid] = (
            rec["experiment"],
            rec["variant"],
            int(rec["pred_label"]),
            float(rec["pred_score"]),
        )
        if len(self.predictions) > self.capacity:
            old, _ = self.predictions.popitem(last=False)
            self.labelled.discard(old)
        if rid in self.pending:
            self.add_feedback(rid, self.pending.pop(rid))
        return True

    def add_feedback(self, request_id: str, label: int) -> str:
        """Join an outcome to its prediction: "joined", "duplicate" or "pending"."""
        if request_id in self.labelled:
            return "duplicate"
        if request_id not in self.predictions:
            self.pending[request_id] = int(label)
            if len(self.pending) > self.capacity:
                self.pending.popitem(last=False)
            return "pending"
        experiment, variant, pred_label, score = self.predictions[request_id]
        s = self._variant(experiment, variant)
        s.outcomes += 1
        s.positives += int(label == 1)
        s.correct += int(label == pred_label)
        s.scores.append(score)
        s.labels.append(int(label))
        self.labelled.add(request_id)
        return "joined"

    def for_experiment(self, experiment: str) -> dict[str, VariantStats]:
        return {v: s for (e, v), s in self.stats.items() if e == experiment}


def labelled_traffic(root: Path, label: str = "label") -> pd.DataFrame:
    """Served predictions joined to their feedback: features, score and the observed outcome,
    one row per request (shadow copies excluded) - training data for the next run."""
    preds = read_records(root, PREDICTIONS)
    feedback = read_records(root, FEEDBACK)
    if preds.empty or feedback.empty:
        return pd.DataFrame()
    served = preds[(preds["status"] == "ok") & ~preds["shadow"].astype(bool)]
    outcomes = feedback[["request_id", "label"]].rename(columns={"label": label})
    return served.merge(outcomes, on="request_id", how="inner", validate="1:1")
