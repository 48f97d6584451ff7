"""Pure batch scoring: typed request rows, feature columns, variant assignment, typed answers.

No Ray, no HTTP: the scoring pipeline (`pipeline.py`) calls these on a batch, so each step is
tested on plain lists and arrays. Raw rows go through `add_features`, the function training
used, so time, bucket and cross features cannot be derived differently when serving.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from app.config import AppConfig, ExperimentConfig
from app.features.transforms import FeatureSpec, add_features
from app.monitoring.records import ERROR, OK, TrafficRecord
from app.serving.assignment import choose_variant, in_shadow_sample

log = logging.getLogger(__name__)
Columns = dict[str, np.ndarray]  # a batch's model features, one array per feature


class RowError(Exception):
    """A row that cannot be scored: HTTP status and a message naming why (4xx: the client can fix it)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ScoringFailed(RowError):
    """The variant's model raised on this row: the service's failure (500), counted per variant."""

    def __init__(self, variant: str, exc: Exception):
        super().__init__(500, f"the {variant} model could not score this row ({type(exc).__name__})")
        self.variant = variant


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One row to score: an entity (features from the online store) or the dataset's raw
    features, with the client's assignment key; `received` is when its request arrived (the
    same for every row of one request)."""

    entity_id: int | str | None = None
    features: Mapping[str, object] | None = None
    key: int | str | None = None
    received: float = field(default_factory=time.perf_counter)
    explain: bool = False  # answer with each feature's contribution to the score (app/model/explain.py)


@dataclass(frozen=True, slots=True)
class Answer:
    """A scored row: what the client is answered, plus what the traffic log keeps."""

    request_id: str
    variant: str
    model_version: int
    score: float
    label: int
    key: str
    features: Mapping[str, object]
    explanation: Mapping[str, object] | None = None  # {"base", "contributions"} when asked for
    by_entity: bool = False  # scored for an entity id (its key), not for a client's features

    def public(self, feedback_token: str | None = None) -> dict:
        """What the client sees (the JSON of one prediction)."""
        answer = {
            "request_id": self.request_id,
            "variant": self.variant,
            "model_version": self.model_version,
            "score": self.score,
            "label": self.label,
            "feedback_token": feedback_token,
        }
        if self.explanation is not None:
            answer["explanation"] = self.explanation
        return answer

    def record(self, experiment: str, latency_ms: float | None, *, shadow: bool = False) -> TrafficRecord:
        return TrafficRecord(
            request_id=self.request_id,
            experiment=experiment,
            variant=self.variant,
            model_version=self.model_version,
            key=self.key,
            score=self.score,
            label=self.label,
            latency_ms=latency_ms,
            features=self.features,
            shadow=shadow,
            status=OK,
            by_entity=self.by_entity,
        )


def failure_record(
    *,
    request_id: str,
    experiment: str,
    variant: str,
    key: str,
    latency_ms: float | None,
    shadow: bool = False,
) -> TrafficRecord:
    """The traffic record of a row its variant's model failed on (counted as that variant's error)."""
    return TrafficRecord(
        request_id=request_id,
        experiment=experiment,
        variant=variant,
        model_version=0,
        key=key,
        score=None,
        label=None,
        latency_ms=latency_ms,
        shadow=shadow,
        status=ERROR,
    )


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
    rows: list[ScoreRow], cfg: AppConfig, spec: FeatureSpec, online: Callable[[list], dict[str, list]]
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
        raw = raw_rows_to_frame([dict(rows[i].features) for i in raw_idx], cfg)
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


def assign(
    rows: list[ScoreRow], experiment: str, split: dict[str, float]
) -> tuple[list[str], list, np.ndarray]:
    """Request ids, assignment keys and variants: an entity is its own key, then the client's
    `key`, else the request id (a one-off assignment)."""
    rids = [new_request_id() for _ in rows]
    keys = [
        r.entity_id if r.entity_id is not None else (r.key if r.key is not None else rid)
        for r, rid in zip(rows, rids, strict=True)
    ]
    variants = np.array([choose_variant(experiment, k, split) for k in keys], dtype=object)
    return rids, keys, variants


def answers(
    *,
    rids: list[str],
    keys: list,
    variants: np.ndarray,
    scores: np.ndarray,
    versions: np.ndarray,
    errors: list[RowError | None],
    inputs: list[dict],
    threshold: float,
    by_entity: list[bool] | None = None,
) -> list[Answer | RowError]:
    """Per row its answer or its error."""
    out: list[Answer | RowError] = []
    for i, error in enumerate(errors):
        if error is not None:
            out.append(error)
        elif not np.isfinite(scores[i]):  # never answer NaN as a prediction
            out.append(RowError(422, "these features give no finite score; check their magnitudes"))
        else:
            out.append(
                Answer(
                    request_id=rids[i],
                    variant=str(variants[i]),
                    model_version=int(versions[i]),
                    score=float(scores[i]),
                    label=int(scores[i] >= threshold),
                    key=str(keys[i]),
                    features=inputs[i],
                    by_entity=bool(by_entity and by_entity[i]),
                )
            )
    return out


def shadow_indices(experiment: ExperimentConfig, rows: list) -> list[int]:
    """The answered rows whose copy the shadow variant scores (a sample independent of assignment)."""
    fraction = experiment.shadow_fraction
    return [
        i
        for i, r in enumerate(rows)
        if isinstance(r, Answer) and in_shadow_sample(experiment.name, r.request_id, fraction)
    ]
