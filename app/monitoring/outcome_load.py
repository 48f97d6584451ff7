"""`mlsys outcomes load`: a producer's outcome files joined to their predictions and handed to
the running drift monitor, where /feedback's outcomes go.

The files are read and checked first (outcome_files.py: a bad file is one error line before
any cluster is joined). The monitor then flushes, so the traffic log holds every prediction
and outcome it has accepted, and each row is joined to its prediction in the log
(outcome_join.py). The joined rows go to the monitor in batches (`DriftMonitor.feedback_batch`),
which counts each once for its producer in the experiment report (or, for a prediction it no
longer remembers, logs it for online learning only) and answers "duplicate" for one labelled
meanwhile. Every row ends either joined or quarantined with its reason, in one parquet file
under `<storage>/quarantine/outcomes/` (ETL's `_reason` and `_raw` columns, with the row's file
and line): loaded = joined + quarantined, checked on every load. Loading a file again adds
nothing: its rows are already labelled.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa

from app.config import AppConfig
from app.data import state
from app.data.schema import RAW, REASON
from app.data.shared_files import shared_files
from app.errors import first_line
from app.monitoring.outcome_files import FILE, KEY, LABEL, REQUEST_ID, ROW, check_rows, read_outcomes, refuse
from app.monitoring.outcome_join import (
    ALREADY_LABELLED,
    labelled_ids,
    resolve,
    served_predictions,
)
from app.monitoring.traffic import traffic_log

BATCH = 1_000  # outcomes per call: the monitor takes each call in one step of its loop (~0.1 s)
CALL_TIMEOUT_S = 120.0


class MonitorUnreachable(RuntimeError):
    """No running monitor to hand outcomes to (no cluster, or the actor did not answer)."""


class RunningMonitor:
    """The monitor actor as a load calls it: blocking calls, a failure as MonitorUnreachable."""

    def __init__(self, handle):
        self.handle = handle

    def flush(self) -> int:
        return self._get(self.handle.flush.remote())

    def feedback_batch(self, outcomes: list[tuple[str, int]], producer: str) -> list[str]:
        return self._get(self.handle.feedback_batch.remote(outcomes, producer=producer))

    def _get(self, ref):
        import ray

        try:
            return ray.get(ref, timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            raise MonitorUnreachable(
                f"the drift monitor did not answer ({first_line(exc)}); run the same command again: "
                "outcomes it already took are reported as already labelled"
            ) from None


def running_monitor(cfg: AppConfig) -> RunningMonitor:
    """The running service's monitor (joins the cluster it runs on)."""
    import ray

    from app.cluster.actors import existing_actor
    from app.cluster.connection import ClusterUnavailable, join_running
    from app.monitoring.monitor import MONITOR

    start = "start the service (`mlsys serve --detach`) first"
    if not ray.is_initialized():
        try:
            join_running(cfg.ray)
        except (ClusterUnavailable, ConnectionError) as exc:
            raise MonitorUnreachable(
                f"no running cluster to load outcomes into ({first_line(exc)}); {start}"
            ) from None
    monitor = existing_actor(MONITOR, str(cfg.storage.path()))
    if monitor is None:  # loading into a monitor made for the occasion would serve nobody
        raise MonitorUnreachable(f"no drift monitor runs for {cfg.storage.path()} on this cluster; {start}")
    return RunningMonitor(monitor)


@dataclass
class OutcomeLoad:
    """What one load did: every row loaded is joined (counted or recorded) or quarantined."""

    run_id: str
    source: str
    producer: str
    files: int = 0
    loaded: int = 0
    counted: int = 0  # joined and counted in the experiment report
    recorded: int = 0  # joined in the feedback log only: the monitor no longer remembers the prediction
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantine_file: str | None = None

    @property
    def joined(self) -> int:
        return self.counted + self.recorded

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def balanced(self) -> bool:
        return self.loaded == self.joined + self.rows_quarantined

    def summary(self) -> str:
        """The one line a load prints."""
        joined = f"{self.joined} joined"
        if self.recorded:
            joined += f" ({self.counted} counted, {self.recorded} for training only: predictions past memory)"
        why = ", ".join(f"{reason}: {n}" for reason, n in self.quarantined.items())
        files = f"{self.files} file{'s' if self.files != 1 else ''}"
        return (
            f"loaded {self.loaded} outcomes of {self.producer} from {files}: {joined}, "
            f"{self.rows_quarantined} quarantined" + (f" ({why})" if why else "")
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "joined": self.joined, "rows_quarantined": self.rows_quarantined}


def load_outcomes(
    cfg: AppConfig, source: str, producer: str, *, monitor=None, now: datetime | None = None
) -> OutcomeLoad:
    """Load the outcome files behind `source` for `producer` (a current producer: the caller
    checks) into the running monitor (`monitor`: a RunningMonitor, or what answers like one)."""
    now = now or datetime.now(timezone.utc)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    frame, files = read_outcomes(source, cfg.dataset)  # a bad file answers before any cluster is joined
    rows = check_rows(frame, cfg.dataset, now=now)
    monitor = monitor or running_monitor(cfg)
    monitor.flush()  # the log holds every prediction and outcome the monitor has accepted
    root, good = traffic_log(cfg.storage), rows[REASON].isna()
    predictions = served_predictions(root, request_ids=rows.loc[good, REQUEST_ID], keys=rows.loc[good, KEY])
    resolve(rows, predictions, cfg.dataset, now=now, late_days=cfg.outcomes.late_days)
    good = rows[REASON].isna()
    labelled = labelled_ids(root, rows.loc[good, REQUEST_ID])
    rows[REASON] = refuse(rows[REASON], good & rows[REQUEST_ID].isin(labelled), ALREADY_LABELLED)
    statuses = hand_over(monitor, rows[rows[REASON].isna()], producer)
    rows[REASON] = refuse(rows[REASON], statuses.reindex(rows.index) == "duplicate", ALREADY_LABELLED)
    monitor.flush()  # persisted before the answer: the next load finds them in the log
    report = OutcomeLoad(run_id, source, producer, files=files, loaded=len(rows))
    report.counted, report.recorded = int((statuses == "joined").sum()), int((statuses == "recorded").sum())
    report.quarantined = dict(Counter(rows[REASON].dropna()).most_common())
    if not report.balanced():  # a bug, never a data condition: refuse to report a lie
        raise RuntimeError(f"outcome accounting does not balance: {report.to_dict()}")
    if report.rows_quarantined:
        files = shared_files(cfg.storage)  # beside ETL's quarantined runs
        uri = files.uri(cfg.storage.outcome_quarantine, f"run={run_id}.parquet")
        report.quarantine_file = files.write_parquet(uri, quarantine_table(frame, rows, producer))
    key = f"{cfg.storage.reports}/outcomes-{run_id}.json"
    state.put_json(state.state_store(cfg.storage), key, report.to_dict())
    return report


def hand_over(monitor, rows: pd.DataFrame, producer: str) -> pd.Series:
    """The monitor's answer for each joined row ("joined", "recorded" or "duplicate"), in batches."""
    outcomes = [(str(r), int(v)) for r, v in zip(rows[REQUEST_ID], rows[LABEL], strict=True)]
    answers: list[str] = []
    for start in range(0, len(outcomes), BATCH):
        answers += monitor.feedback_batch(outcomes[start : start + BATCH], producer)
    return pd.Series(answers, index=rows.index, dtype=object)


def quarantine_table(frame: pd.DataFrame, rows: pd.DataFrame, producer: str) -> pa.Table:
    """The refused rows: reason, original values (JSON), file and line, the prediction matched."""
    bad = rows[REASON].notna()
    original = frame.loc[bad].drop(columns=[FILE, ROW])
    raw = [
        json.dumps({k: v for k, v in rec.items() if not _null(v)}, default=str)
        for rec in original.to_dict("records")
    ]
    return pa.table(
        {
            REASON: pa.array(rows.loc[bad, REASON].tolist(), pa.string()),
            RAW: pa.array(raw, pa.string()),
            FILE: pa.array(frame.loc[bad, FILE].tolist(), pa.string()),
            ROW: pa.array(frame.loc[bad, ROW].tolist(), pa.int64()),
            REQUEST_ID: pa.array(rows.loc[bad, REQUEST_ID].tolist(), pa.string(), from_pandas=True),
            "producer": pa.array([producer] * int(bad.sum()), pa.string()),
        }
    )


def _null(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array value: kept
        return False
