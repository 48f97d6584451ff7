"""The traffic log: one record per prediction and per feedback, as hourly parquet files.

Pure functions and a small accumulator, used by the monitor actor: writing a batch of
records (atomically: a temporary file renamed into place), reading them back (a part that
cannot be read is skipped with a warning, never a crash), and the per-variant experiment
counts with the feedback join. A record's `request_id` makes re-delivery idempotent, and a
feedback's join to its prediction is what turns the log into training data.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict, deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.files import atomic_write_parquet
from app.monitoring.abtest import SHADOW_KEY, VariantStats, add_pair
from app.monitoring.records import SHADOW_SUFFIX

log = logging.getLogger(__name__)
PREDICTIONS, FEEDBACK = "predictions", "feedback"
SAMPLE = 20_000  # recent latencies / scored outcomes kept per variant for percentiles and AUC
UNPAIRED_SHADOWS = 10_000
SAMPLED = ("latency_ms", "scores", "labels", "all_scores")  # the VariantStats fields that are samples
HOUR_FORMAT = "hour=%Y-%m-%dT%H"  # sorts as time does
UNREADABLE = (OSError, ValueError, pa.ArrowException)  # a truncated or garbled file
# What the counts read of a prediction record, in `ExperimentCounts.count_prediction`'s order.
PREDICTION_FIELDS = (
    "request_id",
    "experiment",
    "variant",
    "status",
    "latency_ms",
    "model_version",
    "pred_label",
    "pred_score",
)


def hour_key(at: datetime | pd.Timestamp) -> str:
    at = pd.Timestamp(at)
    return (at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")).strftime(HOUR_FORMAT)


def hour_start(key: str) -> datetime:
    return datetime.strptime(key, HOUR_FORMAT).replace(tzinfo=timezone.utc)


def is_hour(key: str) -> bool:
    """Whether a folder name is an hour partition (a stray copy beside them is ignored)."""
    try:
        hour_start(key)
    except ValueError:
        return False
    return True


def write_records(root: Path, kind: str, records: list[dict]) -> list[Path]:
    """Append records under `<root>/<kind>/hour=.../`; each file appears whole or not at all."""
    frame = pd.DataFrame.from_records(records)
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
    written = []
    for hour, part in frame.groupby(frame["logged_at"].dt.strftime(HOUR_FORMAT)):
        name = f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        written.append(atomic_write_parquet(root / kind / str(hour) / name, table))
    return written


def log_files(root: Path, kind: str, *, since_hour: str | None = None) -> dict[str, list[Path]]:
    """hour key -> that hour's files (parts and compacted files), both in order; no data read."""
    hours: dict[str, list[Path]] = {}
    for folder in sorted((root / kind).glob("hour=*")):
        if is_hour(folder.name) and (since_hour is None or folder.name >= since_hour):
            files = sorted(folder.glob("*.parquet"))  # temporaries are hidden `.name.tmp-…`
            if files:
                hours[folder.name] = files
    return hours


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """One file of the log, or None (with a warning naming it) if it cannot be read whole.
    A file gone since it was listed (compacted, expired) is None without a warning."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        return None
    except UNREADABLE as exc:
        log.warning("skipping unreadable traffic file %s: %s", path, exc)
        return None
    keep = [c for c in columns if c in table.column_names] if columns else None
    return table.select(keep) if keep else table


def quarantine(path: Path) -> None:
    """Move an unreadable file out of the log (`<name>.unreadable`), kept for inspection."""
    try:
        path.rename(path.with_name(f"{path.name}.unreadable"))
    except OSError as exc:
        log.warning("could not move %s aside: %s", path, exc)


def read_records(
    root: Path, kind: str, columns: list[str] | None = None, *, since_hour: str | None = None
) -> pd.DataFrame:
    """Persisted records of a kind (from `since_hour` on), de-duplicated by request_id."""
    for _ in range(3):  # the monitor may compact an hour while it is read: read it again
        frames, vanished = [], False
        for files in log_files(root, kind, since_hour=since_hour).values():
            for f in files:
                table = read_part(f, columns)
                if table is not None:
                    frames.append(table.to_pandas())
                vanished = vanished or (table is None and not f.exists())
        if not vanished:
            break
    if not frames:
        return pd.DataFrame(columns=columns or [])
    frame = pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates("request_id", keep="first").reset_index(drop=True)


class ExperimentCounts:
    """Per-(experiment, variant) counts with the feedback join, in bounded memory.

    Predictions are remembered by request_id (the most recent `capacity`) so a feedback can
    find its variant; a feedback that arrives before its prediction waits in `pending` (the
    most recent `pending_capacity`; older ones are dropped and counted in `pending_dropped`).
    """

    def __init__(self, capacity: int = 200_000, pending_capacity: int = 100_000):  # ~60 MB + ~10 MB
        self.capacity = capacity
        self.pending_capacity = pending_capacity
        self.stats: dict[tuple[str, str], VariantStats] = {}
        self.predictions: OrderedDict[str, tuple[str, str, int, float]] = OrderedDict()
        self.labelled: set[str] = set()
        self.pending: OrderedDict[str, int] = OrderedDict()
        self.pending_dropped = 0
        # Shadow predictions that arrived before their live answer, by the live request id:
        # a single /predict logs its shadow's record first (bounded; not snapshotted).
        self.unpaired_shadows: OrderedDict[str, tuple[str, str, int, float]] = OrderedDict()

    def _variant(self, experiment: str, variant: str) -> VariantStats:
        if (experiment, variant) not in self.stats:
            self.stats[experiment, variant] = VariantStats(**{k: deque(maxlen=SAMPLE) for k in SAMPLED})
        return self.stats[experiment, variant]

    def add_prediction(self, rec: dict) -> bool:
        """Count one prediction record; False if its request_id was seen before."""
        return self.count_prediction(*(rec[c] for c in PREDICTION_FIELDS))

    def count_prediction(
        self,
        rid: str,
        experiment: str,
        variant: str,
        status: str,
        latency_ms,
        model_version,
        pred_label,
        score,
    ) -> bool:
        """`add_prediction` on a record's fields (PREDICTION_FIELDS): the rebuild's fast path."""
        if rid in self.predictions:
            return False
        shadow = rid.endswith(SHADOW_SUFFIX)
        s = self._variant(experiment, variant + SHADOW_KEY if shadow else variant)
        if status != "ok":
            s.errors += 1
            return True
        s.requests += 1
        s.latency_ms.append(float(latency_ms))
        s.all_scores.append(float(score))
        if shadow:
            self._pair_shadow(
                rid[: -len(SHADOW_SUFFIX)], (experiment, variant, int(pred_label), float(score))
            )
        elif rid in self.unpaired_shadows:
            self._pair_shadow(rid, self.unpaired_shadows.pop(rid), live=(int(pred_label), float(score)))
        if model_version not in s.model_versions:
            s.model_versions.append(int(model_version))
        self._remember(rid, (experiment, variant, int(pred_label), float(score)))
        if rid in self.pending:
            self.add_feedback(rid, self.pending.pop(rid))
        return True

    def _pair_shadow(self, live_rid: str, shadow: tuple[str, str, int, float], live=None) -> None:
        """Count a shadow prediction against the live answer to the same request, whichever
        arrived first; one whose live answer has not arrived waits (the oldest dropped)."""
        if live is None:
            known = self.predictions.get(live_rid)
            if known is None:
                self.unpaired_shadows[live_rid] = shadow
                while len(self.unpaired_shadows) > UNPAIRED_SHADOWS:
                    self.unpaired_shadows.popitem(last=False)
                return
            live = (known[2], known[3])
        experiment, variant, label, score = shadow
        add_pair(
            self._variant(experiment, variant + SHADOW_KEY).agreement,
            live_score=live[1],
            live_label=live[0],
            score=score,
            label=label,
        )

    def _remember(self, rid: str, prediction: tuple[str, str, int, float]) -> None:
        self.predictions[rid] = prediction
        if len(self.predictions) > self.capacity:
            old, _ = self.predictions.popitem(last=False)
            self.labelled.discard(old)

    def knows(self, request_id: str) -> bool:
        """Whether a prediction with this id is remembered (or was labelled)."""
        return request_id in self.predictions or request_id in self.labelled

    def add_feedback(self, request_id: str, label: int) -> str:
        """Join an outcome to its prediction: "joined", "duplicate" or "pending"."""
        if request_id in self.labelled:
            return "duplicate"
        if request_id not in self.predictions:
            self.pending[request_id] = int(label)
            while len(self.pending) > self.pending_capacity:
                self.pending.popitem(last=False)
                self.pending_dropped += 1
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

    # ------------------------------------------------------------ snapshot state

    def state(self) -> dict:
        """Everything counted, as plain lists and columns (what `from_state` takes back)."""
        stats = [
            {
                "experiment": e,
                "variant": v,
                **{k: list(x) if isinstance(x, deque) else x for k, x in vars(s).items()},
            }
            for (e, v), s in self.stats.items()
        ]
        rows = list(self.predictions.items())
        predictions = {
            "request_id": [r for r, _ in rows],
            **{
                c: [p[i] for _, p in rows]
                for i, c in enumerate(("experiment", "variant", "pred_label", "pred_score"))
            },
            "labelled": [r in self.labelled for r, _ in rows],
        }
        pending = {"request_id": list(self.pending), "label": list(self.pending.values())}
        return {
            "stats": stats,
            "predictions": predictions,
            "pending": pending,
            "pending_dropped": self.pending_dropped,
        }

    @classmethod
    def from_state(cls, state: dict, **capacities) -> ExperimentCounts:
        counts = cls(**capacities)
        for s in state["stats"]:
            samples = {k: deque(s.get(k, ()), maxlen=SAMPLE) for k in SAMPLED}  # older snapshots lack some
            fields = {k: s[k] for k in ("requests", "errors", "outcomes", "positives", "correct")}
            stats = VariantStats(
                **fields,
                **samples,
                model_versions=list(s["model_versions"]),
                agreement=dict(s.get("agreement", {})),
            )
            counts.stats[s["experiment"], s["variant"]] = stats
        p = state["predictions"]
        columns = (
            p["request_id"],
            p["experiment"],
            p["variant"],
            p["pred_label"],
            p["pred_score"],
            p["labelled"],
        )
        for rid, experiment, variant, label, score, labelled in zip(*columns, strict=True):
            counts._remember(rid, (experiment, variant, int(label), float(score)))
            if labelled:
                counts.labelled.add(rid)
        counts.labelled &= counts.predictions.keys()
        counts.pending_dropped = int(state["pending_dropped"])
        for rid, label in zip(state["pending"]["request_id"], state["pending"]["label"], strict=True):
            counts.add_feedback(rid, int(label))  # not remembered as a prediction: waits again
        return counts


def labelled_traffic(root: Path, label: str = "label", *, since: str | None = None) -> pd.DataFrame:
    """Served predictions (logged after `since`, if given) joined to their feedback: features,
    score and the observed outcome, one row per request (shadow copies excluded) - training
    data for the next run. Only the hours from `since` on are read."""
    start = None if since is None else pd.Timestamp(since)
    if start is not None and start.tzinfo is None:
        start = start.tz_localize("UTC")
    # A feedback is logged after its prediction; an hour's margin covers the clocks' skew.
    preds = read_records(root, PREDICTIONS, since_hour=None if start is None else hour_key(start))
    feedback = read_records(
        root, FEEDBACK, since_hour=None if start is None else hour_key(start - timedelta(hours=1))
    )
    if preds.empty or feedback.empty:
        return pd.DataFrame()
    served = preds[(preds["status"] == "ok") & ~preds["shadow"].astype(bool)]
    if start is not None:
        served = served[pd.to_datetime(served["logged_at"], utc=True) > start]
    outcomes = feedback[["request_id", "label"]].rename(columns={"label": label})
    return served.merge(outcomes, on="request_id", how="inner", validate="1:1")
