"""Pure batch scoring for the ingress: feature columns, variant routing, results, traffic records.

No Ray, no HTTP: the ingress (`ingress.py`) gathers a batch of requests and calls these, so
each step is tested on plain lists and arrays. Raw rows go through `add_features`, the
function training used, so time, bucket and cross features cannot be derived differently
when serving.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from app.config import AppConfig, ExperimentConfig
from app.features.transforms import FeatureSpec, add_features
from app.monitoring.traffic import SHADOW_SUFFIX
from app.serving.assignment import choose_variant, in_shadow_sample

log = logging.getLogger(__name__)
PUBLIC_FIELDS = ("request_id", "variant", "model_version", "score", "label")
Columns = dict[str, np.ndarray]  # a batch's model features, one array per feature


class RowError(Exception):
    """A row that cannot be scored for a reason the client can fix (HTTP status + message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Routing:
    """What one request is routed with: the experiment, its effective split, the models."""

    experiment: ExperimentConfig
    split: dict
    versions: dict
    predictors: dict


def raw_rows_to_frame(rows: list[dict], cfg: AppConfig, *, now: datetime | None = None) -> pd.DataFrame:
    """Client-supplied dataset features -> a frame with every model feature derived.

    A row without the dataset's timestamp is scored as of now (its time features).
    """
    ds = cfg.dataset
    frame = pd.DataFrame.from_records(rows, columns=[*ds.features, ds.timestamp])
    now = now or datetime.now(timezone.utc)
    frame[ds.timestamp] = pd.to_datetime(frame[ds.timestamp], utc=True, errors="coerce").fillna(
        pd.Timestamp(now)
    )
    for col in ds.numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in ds.categorical:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return add_features(frame, cfg)


def feature_columns(
    rows: list, cfg: AppConfig, spec: FeatureSpec, online: Callable[[list], dict[str, list]]
) -> tuple[Columns, list[RowError | None]]:
    """Model-feature columns for request rows (entity ids read with one `online` call, raw
    features derived); per row None or the RowError that stops it.

    Plain numpy columns, not a DataFrame: for the few rows of a served batch pandas' fixed
    cost per operation was most of the batch's time. Numeric features are float64 (NaN when
    missing); time and categorical features keep their values as objects (None when
    missing), so an integer hour stays `3` however the other rows of the batch look."""
    n = len(rows)
    numeric = set(spec.numeric)
    cols = {c: np.full(n, np.nan) if c in numeric else np.full(n, None, dtype=object) for c in spec.names}
    errors: list[RowError | None] = [None] * n
    entity_idx = [i for i, r in enumerate(rows) if r.entity_id is not None]
    raw_idx = [i for i, r in enumerate(rows) if r.features is not None]
    if entity_idx:
        try:
            found = online([rows[i].entity_id for i in entity_idx])
        except Exception as exc:  # the store is down or unreachable: a 503 to retry, not a 500
            log.warning("online store read failed: %s", exc)
            reason = f"the online feature store is unavailable ({type(exc).__name__}); retry"
            for i in entity_idx:
                errors[i] = RowError(503, reason)
        else:
            for c in spec.names:
                cols[c][entity_idx] = found[c]
            if cfg.serve.unknown_entity == "error":
                for k, i in enumerate(entity_idx):
                    if all(found[c][k] is None for c in spec.names):
                        reason = f"entity_id {rows[i].entity_id!r}: no features in the online store"
                        errors[i] = RowError(404, reason)
    if raw_idx:
        raw = raw_rows_to_frame([rows[i].features.model_dump() for i in raw_idx], cfg)
        for c in spec.names:
            cols[c][raw_idx] = raw[c].to_numpy()
    return cols, errors


def take(cols: Columns, idx) -> Columns:
    """The rows `idx` of every column."""
    return {c: v[idx] for c, v in cols.items()}


def records(data: Columns | pd.DataFrame, names: list[str]) -> list[dict]:
    """Rows as {name: value} dicts, from columns or a frame."""
    columns = [data[c].tolist() for c in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def new_request_id() -> str:
    return uuid.uuid4().hex


def assign(rows: list, experiment: str, split: dict[str, float]) -> tuple[list[str], list, np.ndarray]:
    """Request ids, assignment keys and variants: an entity is its own key, then the client's
    `key`, else the request id (a one-off assignment)."""
    rids = [new_request_id() for _ in rows]
    keys = [
        r.entity_id if r.entity_id is not None else (r.key if r.key is not None else rid)
        for r, rid in zip(rows, rids, strict=True)
    ]
    variants = np.array([choose_variant(experiment, k, split) for k in keys], dtype=object)
    return rids, keys, variants


def results(
    *,
    rids: list[str],
    keys: list,
    variants: np.ndarray,
    scores: np.ndarray,
    versions: np.ndarray,
    errors: list,
    inputs: list[dict],
    threshold: float,
) -> list:
    """Per row its result (what is answered, plus what the traffic log needs) or its error."""
    out: list = []
    for i, error in enumerate(errors):
        if error is not None:
            out.append(error)
            continue
        if not np.isfinite(scores[i]):  # never answer NaN as a prediction
            out.append(RowError(422, "these features give no finite score; check their magnitudes"))
            continue
        out.append(
            {
                "request_id": rids[i],
                "variant": variants[i],
                "model_version": int(versions[i]),
                "score": float(scores[i]),
                "label": int(scores[i] >= threshold),
                "key": str(keys[i]),
                "features": inputs[i],
            }
        )
    return out


def shadow_indices(experiment: ExperimentConfig, rows: list) -> list[int]:
    """The answered rows whose copy the shadow variant scores (a sample independent of assignment)."""
    return [
        i
        for i, r in enumerate(rows)
        if isinstance(r, dict)
        and in_shadow_sample(experiment.name, r["request_id"], experiment.shadow_fraction)
    ]


def shadow_results(
    answered: list[dict], *, variant: str, version: int, scores: np.ndarray, threshold: float
) -> list[dict]:
    """The shadow variant's results for copies of `answered` rows (logged, never returned)."""
    return [
        {
            **r,
            "variant": variant,
            "model_version": int(version),
            "score": float(s),
            "label": int(s >= threshold),
        }
        for r, s in zip(answered, scores, strict=True)
    ]


def public(result: dict) -> dict:
    """What the client sees of a result."""
    return {k: result[k] for k in PUBLIC_FIELDS}


def traffic_record(
    result: dict, *, experiment: str, latency_ms: float, shadow: bool = False, status: str = "ok"
) -> dict:
    """A result as the traffic log keeps it (NaN features as nulls)."""
    rec = {
        "request_id": result["request_id"] + (SHADOW_SUFFIX if shadow else ""),
        "logged_at": pd.Timestamp.now(tz="UTC"),
        "experiment": experiment,
        "variant": result["variant"],
        "model_version": result["model_version"],
        "shadow": shadow,
        "pred_score": result["score"],
        "pred_label": result["label"],
        "latency_ms": latency_ms,
        "status": status,
        "key": result["key"],
    }
    for name, value in result["features"].items():
        rec[name] = None if value is None or (isinstance(value, float) and np.isnan(value)) else value
    return rec
