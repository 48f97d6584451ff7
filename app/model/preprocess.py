"""Preprocessor: standard scaling of numerics and integer codes for categoricals, as JSON.

Follows scikit-learn's estimator contract: `__init__` stores parameters, `fit` learns
`means_`, `scales_` and `vocab_` from the training split only and returns self, and
`transform` is built on `transform_batch`, the one function training and serving both call,
so the two cannot diverge. Unknown categories map to code 0 (their own "unknown" embedding
row); a missing numeric becomes 0 after scaling plus a missing-indicator column. State is
saved as JSON, never pickle, so loading an artifact cannot execute code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

FORMAT_VERSION = 1
UNKNOWN = 0  # code of categories not seen in training (and of missing values)
SMALL_BATCH = 256  # up to this many rows, categoricals are coded value by value (see _codes)


def _floats(values: pd.Series | np.ndarray) -> np.ndarray:
    """float64 values, NaN where missing or not a number."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    numbers = pd.to_numeric(pd.Series(values, copy=False), errors="coerce")
    return numbers.to_numpy(dtype="float64", na_value=np.nan)


def _code(vocab: dict[str, int], value: object) -> int:
    if type(value) is str:
        return vocab.get(value, UNKNOWN)
    if pd.isna(value):
        return UNKNOWN
    return vocab.get(str(value), UNKNOWN)


class PreprocessorError(ValueError):
    """A preprocessor file that is malformed or does not match the expected format."""


class Preprocessor:
    def __init__(self, numeric: list[str], categorical: list[str], *, min_count: int = 1):
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.min_count = min_count
        self._lookups: dict[str, tuple[dict, pd.Index, np.ndarray]] = {}

    def fit(self, df: pd.DataFrame) -> Preprocessor:
        means, scales = [], []
        for c in self.numeric:
            values = pd.to_numeric(df[c], errors="coerce").astype("float64")
            mean, std = values.mean(), values.std(ddof=0)
            # An all-null or constant column scales to 0 instead of NaN.
            means.append(0.0 if np.isnan(mean) else float(mean))
            scales.append(1.0 if not std or np.isnan(std) else float(std))
        self.means_, self.scales_ = means, scales
        self.vocab_ = {}
        for c in self.categorical:
            counts = df[c].dropna().astype(str).value_counts()
            kept = sorted(counts[counts >= self.min_count].index)
            self.vocab_[c] = {v: i + 1 for i, v in enumerate(kept)}  # 0 is UNKNOWN
        return self

    @property
    def n_numeric(self) -> int:
        """Width of the numeric block: scaled values then missing indicators."""
        return 2 * len(self.numeric)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes, unknown code included."""
        return [len(self.vocab_[c]) + 1 for c in self.categorical]

    def transform_batch(self, df: pd.DataFrame | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"numeric": float32 [n, 2 * n_numeric], "categorical": int64 [n, n_categorical]}.

        `df` is a frame or a mapping of equally long columns (the serving path's numpy columns)."""
        n = len(df) if isinstance(df, pd.DataFrame) else len(df[(self.numeric + self.categorical)[0]])
        numeric = np.zeros((n, self.n_numeric), dtype=np.float32)
        k = len(self.numeric)
        for i, c in enumerate(self.numeric):
            values = _floats(df[c])
            missing = ~np.isfinite(values)
            numeric[:, i] = np.where(missing, 0.0, (values - self.means_[i]) / self.scales_[i])
            numeric[:, k + i] = missing
        categorical = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            categorical[:, j] = self._codes(c, df[c])
        return {"numeric": numeric, "categorical": categorical}

    def _codes(self, column: str, values: pd.Series | np.ndarray) -> np.ndarray:
        """Vocabulary codes of a column's values (UNKNOWN for missing and unseen ones).

        The text of a value is `str(value)`, as `Series.astype(str)` gives it for the strings,
        integers, floats and booleans features hold (bytes or float32 would differ). A served batch
        (a few rows) is looked up value by value: pandas' per-call overhead (a Series built
        from the vocabulary, index alignment) cost milliseconds per request, more than the
        model. Large frames (training, evaluation) go through one hashed-index lookup."""
        vocab = self.vocab_[column]
        if len(values) <= SMALL_BATCH:
            texts = np.asarray(values, dtype=object)
            return np.fromiter((_code(vocab, v) for v in texts), np.int64, len(texts))
        values = pd.Series(values, copy=False)
        keys, codes = self._lookup(column)
        position = keys.get_indexer(values.astype(str).to_numpy(dtype=object))
        position[values.isna().to_numpy()] = -1
        return codes[position]  # -1 picks the trailing UNKNOWN

    def _lookup(self, column: str) -> tuple[pd.Index, np.ndarray]:
        """The column's vocabulary as a hashed index and its codes (+ UNKNOWN last), built
        once per vocabulary."""
        vocab = self.vocab_[column]
        cached = self._lookups.get(column)
        if cached is None or cached[0] is not vocab:
            codes = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
            cached = (vocab, pd.Index(list(vocab), dtype=object), np.append(codes, UNKNOWN))
            self._lookups[column] = cached
        return cached[1], cached[2]

    def transform(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        return self.transform_batch(df)

    def unknown_rate(self, df: pd.DataFrame) -> dict[str, float]:
        """Share of non-missing values per categorical that the vocabulary does not know."""
        out = {}
        for c in self.categorical:
            present = df[c].dropna().astype(str)
            out[c] = float((~present.isin(self.vocab_[c].keys())).mean()) if len(present) else 0.0
        return out

    # ---------------------------------------------------------------- JSON round trip

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "mlsys.preprocessor",
            "version": FORMAT_VERSION,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "min_count": self.min_count,
            "means": self.means_,
            "scales": self.scales_,
            "vocab": self.vocab_,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        try:
            d = json.loads(text)
            if d.get("format") != "mlsys.preprocessor" or d.get("version") != FORMAT_VERSION:
                raise PreprocessorError("not an mlsys preprocessor (format/version mismatch)")
            pre = cls(d["numeric"], d["categorical"], min_count=int(d["min_count"]))
            pre.means_ = [float(x) for x in d["means"]]
            pre.scales_ = [float(x) for x in d["scales"]]
            pre.vocab_ = {c: {str(k): int(v) for k, v in d["vocab"][c].items()} for c in pre.categorical}
        except PreprocessorError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PreprocessorError(f"malformed preprocessor JSON: {exc}") from None
        if len(pre.means_) != len(pre.numeric) or len(pre.scales_) != len(pre.numeric):
            raise PreprocessorError("malformed preprocessor JSON: numeric statistics do not match columns")
        return pre
