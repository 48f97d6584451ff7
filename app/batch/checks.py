"""Row checks of batch scoring: which rows of a raw batch serving would refuse, and why.

Serving takes a row's raw features as typed, nullable fields (`app/serving/schemas.py`): a
finite number of magnitude at most `MAX_ABS_NUMBER` for a numeric feature, text of at most
`serve.max_string_length` characters for a categorical one, a timestamp or none. A batch row
is checked the same way, column by column. A missing value is scored as serving scores a null
(the numeric's missing indicator, the unknown category) unless the dataset's rules mark the
column `required`; an unknown category is scored as the unknown category, as serving does.
Every refused row keeps the first reason found; nothing here drops a row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.config import AppConfig
from app.data.schema import coerce_int_ids
from app.serving.schemas import MAX_ABS_NUMBER


@dataclass(frozen=True)
class Layout:
    """The columns every output row carries besides its prediction: the entity (when the input
    has it) and the key columns asked for, in the order written."""

    entity: str | None
    keys: tuple[str, ...] = ()

    @property
    def carried(self) -> list[str]:
        return ([self.entity] if self.entity else []) + [k for k in self.keys if k != self.entity]


def add_reason(reasons: pd.Series, bad, text: str) -> None:
    """Record `text` for each bad row that has no reason yet (a row can break several checks)."""
    fresh = np.asarray(bad, dtype=bool) & reasons.isna().to_numpy()
    reasons[fresh] = text


def numeric(col: pd.Series, name: str, reasons: pd.Series, *, required: bool) -> pd.Series:
    """float64 values (NaN where missing); refuses text that is not a number, booleans (serving's
    strict numbers refuse them), infinities and magnitudes serving refuses."""
    if pd.api.types.is_bool_dtype(col):
        values = pd.Series(np.nan, index=col.index)
        add_reason(reasons, col.notna(), f"{name}: not a number")
    else:
        values = pd.to_numeric(col, errors="coerce").astype("float64")
        add_reason(reasons, col.notna() & values.isna(), f"{name}: not a number")
    with np.errstate(invalid="ignore"):
        add_reason(reasons, np.isinf(values), f"{name}: not a finite number")
        add_reason(reasons, values.abs() > MAX_ABS_NUMBER, f"{name}: magnitude above {MAX_ABS_NUMBER:g}")
    if required:
        add_reason(reasons, col.isna(), f"{name}: required value is missing")
    return values.where(np.isfinite(values))


def category(col: pd.Series, name: str, reasons: pd.Series, *, required: bool, max_length: int) -> pd.Series:
    """Text values (None where missing); refuses values that are not text (a number in a parquet
    column) and text longer than serving accepts."""
    values = col.astype(object)
    present = values.notna().to_numpy()
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        is_text = present
    else:
        is_text = np.fromiter((isinstance(v, str) for v in values), bool, len(values))
    add_reason(reasons, present & ~is_text, f"{name}: not text")
    lengths = values.where(is_text).str.len().to_numpy(dtype="float64", na_value=0)
    add_reason(reasons, lengths > max_length, f"{name}: longer than {max_length} characters")
    if required:
        add_reason(reasons, ~present, f"{name}: required value is missing")
    return values.where(is_text, None)


def timestamp(col: pd.Series, name: str, reasons: pd.Series) -> pd.Series:
    """UTC timestamps (NaT where missing: scored as of the run's start, as serving scores a row
    without one as of now); text that is not an ISO 8601 timestamp is refused."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return pd.to_datetime(col, utc=True)
    parsed = pd.to_datetime(col.astype(object), utc=True, errors="coerce", format="ISO8601")
    add_reason(reasons, col.notna() & parsed.isna(), f"{name}: not an ISO 8601 timestamp")
    return parsed


def entity(col: pd.Series, name: str, entity_type: str, reasons: pd.Series) -> pd.Series:
    """The entity ids, exact (int64 never through float64), null where refused: a row is joined
    to its outcomes by its id, so a missing or malformed one is quarantined."""
    if entity_type == "int64":
        ids, why = coerce_int_ids(col)
        bad = why.notna().to_numpy()
        fresh = bad & reasons.isna().to_numpy()
        reasons[fresh] = (f"{name}: " + why[fresh]).to_numpy()
        return ids.astype("Int64").where(~bad)
    text = col.astype("string")
    add_reason(reasons, (text.isna() | (text.str.len() == 0)).to_numpy(dtype=bool), f"{name}: missing id")
    return text.astype(object).where(text.notna(), None)


def check_rows(batch: pd.DataFrame, cfg: AppConfig, layout: Layout) -> tuple[pd.DataFrame, pd.Series]:
    """The batch's checked columns (features, timestamp, carried keys) and each row's reason
    to be quarantined (None for a row to score). `batch` has a fresh RangeIndex."""
    ds = cfg.dataset
    reasons = pd.Series([None] * len(batch), index=batch.index, dtype=object)
    out = pd.DataFrame(index=batch.index)
    if layout.entity and layout.entity in batch:
        out[layout.entity] = entity(batch[layout.entity], layout.entity, ds.entity_type, reasons)
    for c in ds.numeric:
        out[c] = numeric(batch[c], c, reasons, required=_required(cfg, c))
    for c in ds.categorical:
        max_length = cfg.serve.max_string_length
        out[c] = category(batch[c], c, reasons, required=_required(cfg, c), max_length=max_length)
    if ds.timestamp in batch:
        out[ds.timestamp] = timestamp(batch[ds.timestamp], ds.timestamp, reasons)
    else:
        out[ds.timestamp] = pd.Series(pd.NaT, index=batch.index, dtype="datetime64[ns, UTC]")
    for k in layout.carried:
        if k not in out:
            out[k] = batch[k].astype("string").astype(object) if k in batch else None
    return out, reasons


def _required(cfg: AppConfig, column: str) -> bool:
    rule = cfg.dataset.rules.get(column)
    return bool(rule and rule.required)
