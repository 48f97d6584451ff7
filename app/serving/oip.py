"""Open Inference Protocol v2 (KServe v2 / Triton HTTP): tensors in, tensors out, as pure functions.

Inputs are one tensor per dataset feature, shape [n] or [n, 1]: FP32/FP64/INT* for numeric
features, BYTES (strings) for categorical ones, and optionally the dataset's timestamp as
BYTES (ISO 8601). Outputs are `score` (FP32) and `label` (INT64), shape [n], and with `parameters.explain`
`base` [n] and `contributions` [n, features] (FP32).

Tensor data comes as JSON or with Triton's binary tensor extension: the body is a JSON header
of `Inference-Header-Content-Length` bytes followed by each binary input's raw bytes (numbers
little-endian; BYTES elements each prefixed by a 4-byte length), as the Triton client sends
by default. The body is parsed whatever its content type, as Triton does (that client sends
JSON with none). Outputs are returned in binary when the request asks for it.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.config import AppConfig
from app.serving.schemas import MAX_ABS_NUMBER

# Every numeric v2 datatype and its little-endian layout (the binary tensor extension's).
LITTLE_ENDIAN = {
    f"{kind}{bits}": f"<{kind[0].lower()}{bits // 8}"
    for kind, sizes in (("FP", (16, 32, 64)), ("INT", (8, 16, 32, 64)), ("UINT", (8, 16, 32, 64)))
    for bits in sizes
}
NUMERIC_TYPES = set(LITTLE_ENDIAN)
HEADER_LENGTH = "Inference-Header-Content-Length"
OUTPUT_DTYPES = {"FP32": "<f4", "INT64": "<i8"}  # as raw little-endian bytes
EXPLANATION_OUTPUTS = ("base", "contributions")  # with parameters.explain
OUTPUTS = ("score", "label", *EXPLANATION_OUTPUTS)


class OipError(ValueError):
    """A v2 request that does not fit the model; the message names the tensor and the reason."""


class ModelNotServed(Exception):
    """A v2 model name that is not this server's (404), or that has no version loaded (503)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def control_version(cfg: AppConfig, name: str, versions: dict[str, int], control: str) -> int:
    """The control variant's version behind the v2 model `name` (ModelNotServed otherwise)."""
    served = cfg.registry.model_name
    if name != served:
        raise ModelNotServed(404, f"model {name!r} not found (this server has {served!r})")
    if control not in versions:
        raise ModelNotServed(503, f"model {name!r} has no {control} version loaded")
    return versions[control]


class InferInput(BaseModel):
    model_config = ConfigDict(extra="allow")  # `parameters` and other protocol extensions

    name: str
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: str
    data: list | None = None  # None: the tensor's bytes follow the JSON header
    parameters: dict | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[dict] | None = None
    parameters: dict | None = None


def server_metadata(version: str) -> dict:
    return {"name": "mlsys", "version": version, "extensions": ["binary_tensor_data"]}


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request in `body`: all JSON, or a JSON header of `header_length` bytes followed by
    the binary inputs' data, which is decoded into each such input's `data`."""
    if header_length is None:
        header, rest = body, b""
    else:
        # isascii: str.isdigit also accepts digits such as "²" that int() refuses
        is_number = header_length.isascii() and header_length.isdigit()
        if not is_number or not 0 < int(header_length) <= len(body):
            raise OipError(f"{HEADER_LENGTH}: {header_length!r} is not a length within the body")
        header, rest = body[: int(header_length)], body[int(header_length) :]
    try:
        req = InferRequest.model_validate(json.loads(header))
    except (ValueError, UnicodeDecodeError) as exc:  # ValidationError is a ValueError
        raise OipError(f"request: {first_error(exc)}") from None
    except RecursionError:
        raise OipError("request: JSON nested too deeply") from None
    offset = 0
    for t in req.inputs:
        size = (t.parameters or {}).get("binary_data_size")
        if size is None:
            if t.data is None:
                raise OipError(f"input {t.name!r}: no data and no binary_data_size")
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(rest):
            raise OipError(f"input {t.name!r}: binary_data_size {size!r} exceeds the binary data sent")
        t.data = decode_binary(t, rest[offset : offset + size])
        offset += size
    if offset != len(rest):
        raise OipError(f"request: {len(rest) - offset} bytes of binary data belong to no input")
    return req


def first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return f"not JSON ({exc})"


def decode_binary(t: InferInput, raw: bytes) -> list:
    if t.datatype == "BYTES":
        values, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise OipError(f"input {t.name!r}: truncated BYTES element")
            (n,) = struct.unpack_from("<I", raw, i)
            if i + 4 + n > len(raw):
                raise OipError(f"input {t.name!r}: truncated BYTES element")
            try:
                values.append(raw[i + 4 : i + 4 + n].decode())
            except UnicodeDecodeError:
                raise OipError(f"input {t.name!r}: BYTES element is not UTF-8") from None
            i += 4 + n
        return values
    dtype = LITTLE_ENDIAN.get(t.datatype)
    if dtype is None:
        raise OipError(f"input {t.name!r}: datatype {t.datatype} has no binary form here")
    if len(raw) % np.dtype(dtype).itemsize:
        raise OipError(f"input {t.name!r}: {len(raw)} bytes is not a whole number of {t.datatype}")
    return np.frombuffer(raw, dtype=dtype).tolist()


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
    """v2 input tensors -> one dict of raw dataset features per row (the same row, number and
    string limits as /predict)."""
    ds = cfg.dataset
    max_rows, max_chars = cfg.serve.max_instances, cfg.serve.max_string_length
    allowed = {*ds.features, ds.timestamp}
    columns: dict[str, list] = {}
    for t in req.inputs:
        if t.name not in allowed:
            raise OipError(f"input {t.name!r}: not a feature of this model (expected {sorted(allowed)})")
        if t.name in columns:
            raise OipError(f"input {t.name!r}: given twice")
        n = t.shape[0]
        if n < 1 or n > max_rows or any(d < 1 for d in t.shape) or math.prod(t.shape) != n:
            raise OipError(
                f"input {t.name!r}: shape {t.shape} must be [n] or [n, 1] with 1 <= n <= {max_rows}"
            )
        values = _flat(t.data)
        if len(values) != n:
            raise OipError(f"input {t.name!r}: shape {t.shape} holds {n} values but data has {len(values)}")
        if t.name in ds.numeric:
            if t.datatype not in NUMERIC_TYPES:
                raise OipError(f"input {t.name!r}: datatype {t.datatype} must be numeric (e.g. FP32)")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not _bounded(v):
                    shown = repr(v) if len(repr(v)) < 40 else repr(v)[:37] + "..."
                    raise OipError(f"input {t.name!r}: {shown} is not a number within ±{MAX_ABS_NUMBER:g}")
        else:
            if t.datatype != "BYTES":
                raise OipError(f"input {t.name!r}: datatype {t.datatype} must be BYTES")
            if not all(isinstance(v, str) for v in values):
                raise OipError(f"input {t.name!r}: BYTES data must be strings")
            if any(len(v) > max_chars for v in values):
                raise OipError(f"input {t.name!r}: a string is longer than {max_chars} characters")
        columns[t.name] = values
    missing = [c for c in ds.features if c not in columns]
    if missing:
        raise OipError(f"inputs {missing}: missing")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise OipError(f"inputs have different lengths {sorted(lengths)}")
    if req.outputs:
        unknown = [o.get("name") for o in req.outputs if o.get("name") not in OUTPUTS]
        if unknown:
            raise OipError(f"outputs {unknown}: unknown (this model has {', '.join(OUTPUTS)})")
    n = lengths.pop()
    return [{c: columns[c][i] for c in columns} for i in range(n)]


def _bounded(v: int | float) -> bool:
    # Compared as given: a 400-digit int must not be converted to float (OverflowError).
    return (isinstance(v, int) or math.isfinite(v)) and -MAX_ABS_NUMBER <= v <= MAX_ABS_NUMBER


def wants_explanation(req: InferRequest) -> bool:
    """`parameters.explain`: answer each row's features' contributions too (app/model/explain.py)."""
    explain = (req.parameters or {}).get("explain", False)
    if not isinstance(explain, bool):
        raise OipError("parameters.explain: true or false")
    asked = [o.get("name") for o in req.outputs or [] if o.get("name") in EXPLANATION_OUTPUTS]
    if asked and not explain:
        raise OipError(f"outputs {asked}: need parameters.explain true")
    return explain


def check_explain_rows(rows: int, cfg: AppConfig) -> None:
    """An explained request holds at most `serve.max_explain_rows` rows (each costs many passes)."""
    if rows > cfg.serve.max_explain_rows:
        raise OipError(
            f"parameters.explain: at most {cfg.serve.max_explain_rows} rows (serve.max_explain_rows)"
        )


def response(
    req: InferRequest,
    name: str,
    version: int,
    scores: list[float],
    labels: list[int],
    explanations: list[dict] | None = None,
) -> dict:
    """The v2 response; with `explanations`, also `base` [n] and `contributions` [n, features]
    (the features named in that output's `parameters.features`): base + row sum = the logit."""
    default = {"score", "label", *(EXPLANATION_OUTPUTS if explanations else ())}
    wanted = {o.get("name") for o in req.outputs} if req.outputs else default
    outputs = []
    if "score" in wanted:
        outputs.append({"name": "score", "datatype": "FP32", "shape": [len(scores)], "data": scores})
    if "label" in wanted:
        outputs.append({"name": "label", "datatype": "INT64", "shape": [len(labels)], "data": labels})
    if explanations and "base" in wanted:
        base = [e["base"] for e in explanations]
        outputs.append({"name": "base", "datatype": "FP32", "shape": [len(base)], "data": base})
    if explanations and "contributions" in wanted:
        features = list(explanations[0]["contributions"])
        rows = [[e["contributions"][f] for f in features] for e in explanations]
        outputs.append(
            {
                "name": "contributions",
                "datatype": "FP32",
                "shape": [len(rows), len(features)],
                "data": [v for row in rows for v in row],
                "parameters": {"features": ",".join(features)},
            }
        )
    out = {"model_name": name, "model_version": str(version), "outputs": outputs}
    if req.id is not None:
        out["id"] = req.id
    return out


def wants_binary(req: InferRequest) -> bool:
    """Whether the client asked for binary outputs (Triton's client does by default)."""
    if (req.parameters or {}).get("binary_data_output"):
        return True
    return any((o.get("parameters") or {}).get("binary_data") for o in req.outputs or [])


def binary_response(resp: dict) -> tuple[bytes, int]:
    """`resp` with its output data moved behind the JSON header: (body, header length)."""
    header, chunks = {**resp, "outputs": []}, []
    for out in resp["outputs"]:
        raw = np.asarray(out["data"], dtype=OUTPUT_DTYPES[out["datatype"]]).tobytes()
        chunks.append(raw)
        meta = {k: v for k, v in out.items() if k != "data"}
        parameters = {**meta.get("parameters", {}), "binary_data_size": len(raw)}
        header["outputs"].append({**meta, "parameters": parameters})
    head = json.dumps(header).encode()
    return head + b"".join(chunks), len(head)
