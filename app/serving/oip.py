"""Open Inference Protocol v2 (KServe v2 / Triton HTTP): tensors in, tensors out, as pure functions.

Inputs are one tensor per dataset feature, shape [n] or [n, 1]: FP32/FP64/INT* for numeric
features, BYTES (strings) for categorical ones, and optionally the dataset's timestamp as
BYTES (ISO 8601). Outputs are `score` (FP32) and `label` (INT64), shape [n].
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from app.config import AppConfig

NUMERIC_TYPES = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}
MAX_ROWS = 100_000


class OipError(ValueError):
    """A v2 request that does not fit the model; the message names the tensor and the reason."""


class InferInput(BaseModel):
    model_config = ConfigDict(extra="allow")  # `parameters` and other protocol extensions

    name: str
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: str
    data: list


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[dict] | None = None


def model_metadata(cfg: AppConfig, name: str, versions: list[int]) -> dict:
    ds = cfg.dataset
    inputs = [{"name": c, "datatype": "FP32", "shape": [-1]} for c in ds.numeric]
    inputs += [{"name": c, "datatype": "BYTES", "shape": [-1]} for c in ds.categorical]
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "mlsys_torch",
        "inputs": inputs,
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
    }


def _flat(data: list) -> list:
    return [x for row in data for x in (row if isinstance(row, list) else [row])]


def request_rows(req: InferRequest, cfg: AppConfig) -> list[dict]:
    """v2 input tensors -> one dict of raw dataset features per row."""
    ds = cfg.dataset
    allowed = {*ds.features, ds.timestamp}
    columns: dict[str, list] = {}
    for t in req.inputs:
        if t.name not in allowed:
            raise OipError(f"input {t.name!r}: not a feature of this model (expected {sorted(allowed)})")
        if t.name in columns:
            raise OipError(f"input {t.name!r}: given twice")
        n = t.shape[0]
        if n < 1 or n > MAX_ROWS or any(d < 1 for d in t.shape) or math.prod(t.shape) != n:
            raise OipError(
                f"input {t.name!r}: shape {t.shape} must be [n] or [n, 1] with 1 <= n <= {MAX_ROWS}"
            )
        values = _flat(t.data)
        if len(values) != n:
            raise OipError(f"input {t.name!r}: shape {t.shape} holds {n} values but data has {len(values)}")
        if t.name in ds.numeric:
            if t.datatype not in NUMERIC_TYPES:
                raise OipError(f"input {t.name!r}: datatype {t.datatype} must be numeric (e.g. FP32)")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise OipError(f"input {t.name!r}: {v!r} is not a finite number")
        else:
            if t.datatype != "BYTES":
                raise OipError(f"input {t.name!r}: datatype {t.datatype} must be BYTES")
            if not all(isinstance(v, str) for v in values):
                raise OipError(f"input {t.name!r}: BYTES data must be strings")
        columns[t.name] = values
    missing = [c for c in ds.features if c not in columns]
    if missing:
        raise OipError(f"inputs {missing}: missing")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise OipError(f"inputs have different lengths {sorted(lengths)}")
    if req.outputs:
        unknown = [o.get("name") for o in req.outputs if o.get("name") not in ("score", "label")]
        if unknown:
            raise OipError(f"outputs {unknown}: unknown (this model has score and label)")
    n = lengths.pop()
    return [{c: columns[c][i] for c in columns} for i in range(n)]


def response(req: InferRequest, name: str, version: int, scores: list[float], labels: list[int]) -> dict:
    wanted = {o.get("name") for o in req.outputs} if req.outputs else {"score", "label"}
    outputs = []
    if "score" in wanted:
        outputs.append({"name": "score", "datatype": "FP32", "shape": [len(scores)], "data": scores})
    if "label" in wanted:
        outputs.append({"name": "label", "datatype": "INT64", "shape": [len(labels)], "data": labels})
    out = {"model_name": name, "model_version": str(version), "outputs": outputs}
    if req.id is not None:
        out["id"] = req.id
    return out
