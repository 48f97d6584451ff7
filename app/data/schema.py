"""The data contract derived from the config's `dataset` section, and the pure row cleaner.

`clean_batch` turns one raw batch (any types: csv strings, json numbers, parquet) into the
contract's types and marks each row either with its warehouse date partition or with the
reason it is rejected. Rejected rows keep their original values as JSON in `_raw`, so
quarantine never loses data.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.config import DATE_PART, QUARANTINE_REASON, RAW_ROW, DatasetConfig

REASON, RAW, PART = QUARANTINE_REASON, RAW_ROW, DATE_PART
QUARANTINE = "quarantine"
# Spellings of "no value" found in csv/json exports; they mean null, not a bad value.
NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "<na>"})
# Why an integer id is refused (the column name is prefixed): few distinct texts, so the run
# report can count rows per reason.
ID_MISSING = "missing id"
ID_NOT_INTEGER = "not an integer id"
ID_OUT_OF_RANGE = "id outside the int64 range"
ID_INFINITE = "infinite id"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Up to 18 digits always fits in int64: converted exactly by Arrow, without a Python parse.
_SHORT_INT = r"-?[0-9]{1,18}"


class DataError(ValueError):
    """Input data that cannot be processed at all (missing column, corrupt or empty input)."""


def arrow_schema(ds: DatasetConfig, *, with_meta: bool = True) -> pa.Schema:
    """Warehouse schema: typed contract columns (+ quarantine metadata while in flight)."""
    fields = [
        pa.field(ds.entity, pa.int64() if ds.entity_type == "int64" else pa.string()),
        pa.field(ds.timestamp, pa.timestamp("us", tz="UTC")),
        pa.field(ds.label, pa.int8()),
        *(pa.field(c, pa.float64()) for c in ds.numeric),
        *(pa.field(c, pa.string()) for c in ds.categorical),
    ]
    if with_meta:
        fields += [pa.field(REASON, pa.string()), pa.field(RAW, pa.string()), pa.field(PART, pa.string())]
    return pa.schema(fields)


def missing_columns(ds: DatasetConfig, present: list[str]) -> list[str]:
    names = {ds.rename.get(c, c) for c in present}
    return [c for c in ds.columns if c not in names]


def _blank(col: pd.Series) -> pd.Series:
    """True where a raw value means "no value" (null, empty, or a null token)."""
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return col.isna()
    return col.isna() | col.astype("string").str.strip().str.lower().isin(NULL_TOKENS).fillna(True)


def _to_number(col: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    return pd.to_numeric(col, errors="coerce").astype("float64")


def _parse_id(text: str) -> int | str:
    """One id's text -> the integer, or why it is not one. Decimal, never float: exact."""
    if "_" in text:  # Decimal reads "1_000" as 1000; an id with "_" is not a number
        return ID_NOT_INTEGER
    try:
        num = Decimal(text)
    except InvalidOperation:
        return ID_NOT_INTEGER
    if num.is_infinite():
        return ID_INFINITE
    if num.is_nan():
        return ID_NOT_INTEGER
    if num.is_zero():
        return 0
    if num.adjusted() > 18:  # >= 1e19 > 2**63; also keeps int() off "1e999999999"
        return ID_OUT_OF_RANGE
    if num != num.to_integral_value():
        return ID_NOT_INTEGER
    value = int(num)
    return value if INT64_MIN <= value <= INT64_MAX else ID_OUT_OF_RANGE


def _plain_int_text(col: pd.Series) -> pa.Array | None:
    """The ids when every value is null or plain integer text within int64, else None.

    Arrow's string -> int64 cast is exact and strict (digits and a '-' only, overflow is an
    error), so one cast settles a clean batch; anything else takes the careful path."""
    try:
        arr = pa.array(col.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        return pc.cast(arr, pa.int64())
    except pa.ArrowException:  # a value that is not text, or text that is not a plain int64
        return None


def coerce_int_ids(col: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Integer ids as exact int64, with the reason each bad one is refused.

    Nothing goes through float64, where ids above 2**53 collide (and then vanish as
    duplicates). Text ("123", " 9007199254740993 ", "1.0"), integer and float columns are
    accepted; booleans, fractions, inf and values outside int64 are refused. Returns the ids
    (0 where refused) and the reasons (None where the id is good), both on `col`'s index.
    """
    n = len(col)
    ids = np.zeros(n, dtype=np.int64)
    why = np.full(n, None, dtype=object)
    missing = col.isna().to_numpy(dtype=bool)
    if pd.api.types.is_bool_dtype(col):
        why[~missing] = ID_NOT_INTEGER
    elif pd.api.types.is_unsigned_integer_dtype(col):
        big = np.zeros(n, dtype=bool)
        values = col[~missing].to_numpy(dtype=np.uint64)
        big[~missing] = values > np.uint64(INT64_MAX)
        why[big] = ID_OUT_OF_RANGE
        ok = ~missing & ~big
        ids[ok] = col[ok].to_numpy(dtype=np.uint64).astype(np.int64)
    elif pd.api.types.is_integer_dtype(col):
        ids[~missing] = col[~missing].to_numpy(dtype=np.int64)
    elif pd.api.types.is_float_dtype(col):
        x = col.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            inf = np.isinf(x)
            frac = np.isfinite(x) & (x != np.floor(x))
            # 2.0**63 is exact in float64 and is the first value past INT64_MAX.
            big = np.isfinite(x) & ~frac & ((x < -(2.0**63)) | (x >= 2.0**63))
        why[inf], why[frac], why[big] = ID_INFINITE, ID_NOT_INTEGER, ID_OUT_OF_RANGE
        ok = ~missing & ~inf & ~frac & ~big
        ids[ok] = x[ok].astype(np.int64)
    elif (clean := _plain_int_text(col)) is not None:  # the common case, fast and exact
        ids = clean.fill_null(0).to_numpy()
        missing = clean.is_null().to_numpy(zero_copy_only=False)
    else:  # text (csv) or mixed Python values (json): parse the text of each value exactly
        text = col.astype("string").str.strip()
        missing = (text.isna() | text.str.lower().isin(NULL_TOKENS)).to_numpy(dtype=bool)
        arr = pa.array(text.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        short = pc.match_substring_regex(arr, f"^{_SHORT_INT}$").to_numpy(zero_copy_only=False)
        short = np.asarray(short, dtype=bool) & ~missing  # a null's match is None
        ids[short] = pc.cast(arr.filter(pa.array(short)), pa.int64()).to_numpy()
        for i in np.flatnonzero(~missing & ~short):
            parsed = _parse_id(text.iat[i])
            if isinstance(parsed, int):
                ids[i] = parsed
            else:
                why[i] = parsed
    why[missing] = ID_MISSING
    return pd.Series(ids, index=col.index), pd.Series(why, index=col.index, dtype=object)


def _to_timestamp(col: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        out = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        return out.astype("datetime64[us, UTC]")
    text = col.astype("string")
    # ISO 8601 first (fast path for the common case), then anything pandas understands.
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    retry = parsed.isna() & text.notna() & (text.str.len() > 0)
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    return parsed.astype("datetime64[us, UTC]")


def _to_label(col: pd.Series, label_map: dict[str, int] | None) -> pd.Series:
    if label_map is not None:
        return col.astype("string").str.strip().map(label_map).astype("float64")
    num = _to_number(col)
    return num.where(num.isin([0.0, 1.0]))


def _add_reason(reasons: pd.Series, bad: pd.Series, text: str) -> None:
    """Record the first reason for each newly bad row (a row can break several rules)."""
    fresh = bad & reasons.isna()
    reasons[fresh] = text


def _date_labels(ts: pd.Series) -> pd.Series:
    """YYYY-MM-DD of each timestamp; formats each distinct day once (strftime per row is slow)."""
    codes, days = pd.factorize(ts.dt.floor("D"))
    labels = np.append(days.strftime("%Y-%m-%d").to_numpy(dtype=object), None)
    return pd.Series(labels[codes], index=ts.index, dtype=object)  # code -1 (NaT) -> None


def _check_rules(out: pd.DataFrame, ds: DatasetConfig, reasons: pd.Series) -> None:
    """Add the reason of each row that breaks one of the config's validation rules."""
    for c, rule in ds.rules.items():
        col = out[c]
        if rule.required:
            _add_reason(reasons, col.isna(), f"{c}: required value is missing")
        if rule.min is not None:
            _add_reason(reasons, col < rule.min, f"{c}: below minimum {rule.min:g}")
        if rule.max is not None:
            _add_reason(reasons, col > rule.max, f"{c}: above maximum {rule.max:g}")
        if rule.allowed is not None:
            _add_reason(reasons, col.notna() & ~col.isin(rule.allowed), f"{c}: value not in allowed list")


def clean_batch(raw: pd.DataFrame, ds: DatasetConfig) -> pd.DataFrame:
    """Coerce a raw batch to the contract and mark each row's partition or rejection reason."""
    raw = raw.rename(columns=ds.rename)
    missing = missing_columns(ds, list(raw.columns))
    if missing:
        raise DataError(f"input is missing required column(s) {missing}")
    raw = raw.reset_index(drop=True)
    reasons = pd.Series(pd.NA, index=raw.index, dtype="object")
    out = pd.DataFrame(index=raw.index)

    if ds.entity_type == "int64":
        ids, why = coerce_int_ids(raw[ds.entity])
        bad_id = why.notna()
        reasons[bad_id] = f"{ds.entity}: " + why[bad_id]  # the first check: no reason yet
        out[ds.entity] = ids
    else:
        ent = raw[ds.entity].astype("string")
        _add_reason(reasons, ent.isna() | (ent.str.len() == 0), f"{ds.entity}: missing id")
        out[ds.entity] = ent.astype(object)

    ts = _to_timestamp(raw[ds.timestamp])
    _add_reason(reasons, ts.isna(), f"{ds.timestamp}: missing or unparseable timestamp")
    out[ds.timestamp] = ts

    label = _to_label(raw[ds.label], ds.label_map)
    _add_reason(reasons, label.isna(), f"{ds.label}: missing or not one of the two label values")
    out[ds.label] = label.fillna(0).astype("int8")

    for c in ds.numeric:
        num = _to_number(raw[c])
        # Only unparsed values can be junk; checking just those keeps the text work small.
        unparsed = num.isna().to_numpy()
        junk = np.zeros(len(num), dtype=bool)
        junk[unparsed] = ~_blank(raw[c][unparsed]).to_numpy(dtype=bool)
        _add_reason(reasons, pd.Series(junk, index=raw.index), f"{c}: not a number")
        _add_reason(reasons, np.isinf(num), f"{c}: infinite value")
        out[c] = num.where(~np.isinf(num))
    for c in ds.categorical:
        cat = raw[c].astype("string").str.strip()
        out[c] = cat.where(~_blank(raw[c])).astype(object)

    _check_rules(out, ds, reasons)
    bad = reasons.notna()
    out[REASON] = reasons.where(bad, None)
    out[RAW] = None
    if bad.any():
        originals = raw.loc[bad].astype("string")
        out.loc[bad, RAW] = originals.to_json(orient="records", lines=True).splitlines()
    out[PART] = _date_labels(ts)
    out.loc[bad, PART] = QUARANTINE
    return out


def to_arrow(df: pd.DataFrame, ds: DatasetConfig) -> pa.Table:
    """Fix the batch's Arrow schema, so every block agrees whatever its values were."""
    return pa.Table.from_pandas(df, schema=arrow_schema(ds), preserve_index=False)
