"""Outcome rows (outcome_files.py) joined to the served predictions they label, in the traffic
log, without Ray.

A row with a `request_id` labels that prediction; a row with an entity and an event time labels
the entity's latest prediction logged at or before that time (the log's `key` is the entity id
of an entity request, or the client's assignment key). Only served predictions count: not a
shadow copy, not a failed request. A row is refused when no such prediction is in the log, when
its prediction was logged more than `outcomes.late_days` before the load, when an earlier row
of the load labels the same prediction, or when the prediction already has an outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.config import DatasetConfig
from app.data.schema import REASON
from app.data.shared_files import as_files
from app.monitoring.outcome_files import EVENT_AT, KEY, REQUEST_ID, refuse
from app.monitoring.records import OK
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, Root, log_files, read_part

PREDICTED_AT = "_predicted_at"  # when the labelled prediction was logged
SERVED_COLUMNS = ["request_id", "key", "logged_at", "status", "shadow", "by_entity"]
UNKNOWN_REQUEST_ID = "unknown request_id"
LATE = "arrived after the late outcome window"
DUPLICATE = "duplicate of an earlier row"  # of this load, for the same prediction
ALREADY_LABELLED = "already labelled"
_TIME = "datetime64[us, UTC]"


def no_prediction(ds: DatasetConfig) -> str:
    return f"no prediction for this {ds.entity} at or before its {ds.timestamp}"


# ---------------------------------------------------------------- reading the log


def served_predictions(root: Root, *, request_ids: Iterable[str], keys: Iterable[str]) -> pd.DataFrame:
    """The served predictions in the traffic log under `root` with one of these request ids
    or assignment keys: request_id, key and logged_at (UTC)."""
    ids, keys = _values(request_ids), _values(keys)

    def wanted(table: pa.Table) -> pa.Array:
        # By key only a prediction scored for that entity id: a client's own `key` may be any
        # entity's id, and must not take the outcome of the entity it names. Files logged
        # before `by_entity` was recorded cannot tell, so they join by request id only.
        by_entity = (
            table["by_entity"] if "by_entity" in table.column_names else pa.nulls(len(table), pa.bool_())
        )
        named = pc.or_(
            pc.is_in(table["request_id"], value_set=ids),
            pc.and_(pc.is_in(table["key"].cast(pa.string()), value_set=keys), pc.fill_null(by_entity, False)),
        )
        served = pc.and_(pc.equal(table["status"], OK), pc.invert(pc.fill_null(table["shadow"], False)))
        return pc.and_(named, served)

    found = _scan(root, PREDICTIONS, SERVED_COLUMNS, wanted)
    found = found.drop_duplicates("request_id", keep="first")[["request_id", "key", "logged_at"]]
    found["logged_at"] = pd.to_datetime(found["logged_at"], utc=True).astype(_TIME)
    return found.reset_index(drop=True)


def labelled_ids(root: Root, request_ids: Iterable[str]) -> set[str]:
    """Those of `request_ids` that the feedback log under `root` holds an outcome for."""
    ids = _values(request_ids)
    found = _scan(root, FEEDBACK, ["request_id"], lambda t: pc.is_in(t["request_id"], value_set=ids))
    return set(found["request_id"])


def _values(values: Iterable[str]) -> pa.Array:
    return pa.array(sorted({v for v in values if v is not None}), type=pa.string())


def _scan(root: Root, kind: str, columns: list[str], wanted: Callable[[pa.Table], pa.Array]) -> pd.DataFrame:
    """The rows of a kind's log that `wanted` picks, read one file at a time."""
    for _ in range(3):  # the monitor may compact an hour while it is read: read it again
        parts, vanished = [], False
        for files in log_files(root, kind).values():
            for f in files:
                table = read_part(root, f, columns)
                if table is None:
                    vanished = vanished or not as_files(root).exists(f)
                    continue
                parts.append(table.filter(wanted(table)).to_pandas())
        if not vanished:
            break
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# ---------------------------------------------------------------- the join


def resolve(
    rows: pd.DataFrame, predictions: pd.DataFrame, ds: DatasetConfig, *, now: datetime, late_days: float
) -> None:
    """In place: each good row's REQUEST_ID and PREDICTED_AT from the prediction it labels (of
    `predictions`, served_predictions' frame), or the reason it is refused."""
    reasons = rows[REASON].copy()
    logged = predictions.set_index("request_id")["logged_at"]
    by_id = reasons.isna() & rows[REQUEST_ID].notna()
    rows[PREDICTED_AT] = rows[REQUEST_ID].where(by_id).map(logged).astype(_TIME)
    reasons = refuse(reasons, by_id & rows[PREDICTED_AT].isna(), UNKNOWN_REQUEST_ID)
    by_entity = reasons.isna() & rows[REQUEST_ID].isna()
    if by_entity.any():
        found = latest_at_or_before(rows.loc[by_entity, [KEY, EVENT_AT]], predictions)
        rows.loc[by_entity, REQUEST_ID] = found["request_id"]
        rows.loc[by_entity, PREDICTED_AT] = found["logged_at"]
        reasons = refuse(reasons, by_entity & rows[REQUEST_ID].isna(), no_prediction(ds))
    window = pd.Timestamp(now) - timedelta(days=late_days)
    reasons = refuse(reasons, reasons.isna() & (rows[PREDICTED_AT] < window), LATE)
    good = reasons.isna()
    reasons = refuse(reasons, good & rows[REQUEST_ID].where(good).duplicated(keep="first"), DUPLICATE)
    rows[REASON] = reasons


def latest_at_or_before(events: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Per event (KEY, EVENT_AT) the request_id and logged_at of its key's latest prediction
    logged at or before EVENT_AT (None/NaT if none), on `events`' index."""
    left = events.assign(_i=events.index).sort_values(EVENT_AT, kind="stable")
    right = predictions[["key", "logged_at", "request_id"]].astype({"key": object})
    right = right.sort_values("logged_at", kind="stable")
    joined = pd.merge_asof(
        left.astype({EVENT_AT: _TIME, KEY: object}),
        right,
        left_on=EVENT_AT,
        right_on="logged_at",
        left_by=KEY,
        right_by="key",
        direction="backward",
        allow_exact_matches=True,
    )
    joined = joined.set_index("_i").reindex(events.index)
    return pd.DataFrame(
        {
            "request_id": joined["request_id"].astype(object).where(joined["request_id"].notna(), None),
            "logged_at": joined["logged_at"].astype(_TIME),
        },
        index=events.index,
    )
