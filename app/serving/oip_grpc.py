"""Open Inference Protocol v2 over gRPC (KServe v2 / Triton's `inference.GRPCInferenceService`).

Ray Serve's gRPC proxy calls a deployment's method by the RPC's name, so the ingress takes the
methods below (`OipGrpcMethods`) and every inference goes through the same path as HTTP:
`ModelInfer` becomes an `oip.InferRequest` (raw or typed tensor contents), is checked by
`oip.request_rows` and scored by the ingress's `v2_infer` (assignment, batching, shadow, the
traffic log). The messages are Triton's generated ones (`tritonclient.grpc.service_pb2`,
a superset of KServe's), so Triton's and KServe's clients work unchanged.

Requests reach the replica as bytes (`add_inference_service_to_server` registers the service
without a deserializer): the proxy pickles what it hands over, and the generated classes
name a module (`grpc_service_pb2`) that cannot be imported to unpickle them. Errors are gRPC
status codes with a one-line detail, never a crash: INVALID_ARGUMENT for tensors that do not
fit, NOT_FOUND for another model's name, UNAVAILABLE while no model is loaded.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb

from app.serving import oip
from app.serving.scoring import RowError

SERVICER = "app.serving.oip_grpc.add_inference_service_to_server"  # gRPCOptions' import path
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# The typed field of `InferTensorContents` each datatype's values come in.
TYPED_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
NOT_SERVED = {404: grpc.StatusCode.NOT_FOUND, 503: grpc.StatusCode.UNAVAILABLE}
INVALID = grpc.StatusCode.INVALID_ARGUMENT
_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_inference_service_to_server(servicer, server) -> None:
    """`grpc_servicer_functions` entry: the inference service, each request passed on as bytes."""
    handlers = {
        m.name: _HANDLER_KINDS[m.client_streaming, m.server_streaming](
            getattr(servicer, m.name), request_deserializer=None, response_serializer=None
        )
        for m in SERVICE.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(SERVICE.full_name, handlers)


def infer_request(message: bytes) -> tuple[str, oip.InferRequest]:
    """The model name and the request as the HTTP path holds it (OipError when malformed)."""
    try:
        req = pb.ModelInferRequest.FromString(message)
    except DecodeError:
        raise oip.OipError("request: not a ModelInferRequest message") from None
    raws = list(req.raw_input_contents)
    if raws and len(raws) != len(req.inputs):
        raise oip.OipError(f"raw_input_contents: {len(raws)} entries for {len(req.inputs)} inputs")
    inputs = []
    for i, t in enumerate(req.inputs):
        tensor = {"name": t.name, "shape": list(t.shape), "datatype": t.datatype}
        try:
            tensor = oip.InferInput.model_validate(tensor)
        except ValueError as exc:
            raise oip.OipError(f"input {t.name!r}: {oip.first_error(exc)}") from None
        tensor.data = oip.decode_binary(tensor, raws[i]) if raws else _typed(t)
        inputs.append(tensor)
    outputs = [{"name": o.name} for o in req.outputs] or None
    parameters = {
        k: getattr(v, v.WhichOneof("parameter_choice") or "string_param") for k, v in req.parameters.items()
    }
    try:
        body = oip.InferRequest(
            id=req.id or None, inputs=inputs, outputs=outputs, parameters=parameters or None
        )
    except ValueError as exc:
        raise oip.OipError(f"request: {oip.first_error(exc)}") from None
    return req.model_name, body


def _typed(t) -> list:
    """An input's values from its typed contents (clients that do not send raw bytes)."""
    field = TYPED_CONTENTS.get(t.datatype)
    if field is None:
        raise oip.OipError(f"input {t.name!r}: datatype {t.datatype} is not a v2 datatype")
    values = list(getattr(t.contents, field))
    if field != "bytes_contents":
        return values
    try:
        return [v.decode() for v in values]
    except UnicodeDecodeError:
        raise oip.OipError(f"input {t.name!r}: BYTES element is not UTF-8") from None


def infer_response(resp: dict):
    """The HTTP path's response dict as a ModelInferResponse, outputs as raw little-endian bytes
    (what Triton's client reads back with `as_numpy`)."""
    out = pb.ModelInferResponse(model_name=resp["model_name"], model_version=resp["model_version"])
    if resp.get("id") is not None:
        out.id = resp["id"]
    for o in resp["outputs"]:
        tensor = out.outputs.add(name=o["name"], datatype=o["datatype"], shape=o["shape"])
        for key, value in o.get("parameters", {}).items():
            tensor.parameters[key].string_param = str(value)
        out.raw_output_contents.append(
            np.asarray(o["data"], dtype=oip.OUTPUT_DTYPES[o["datatype"]]).tobytes()
        )
    return out


def metadata_response(meta: dict):
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta["name"],
        versions=meta["versions"],
        platform=meta["platform"],
        inputs=[tensor(**t) for t in meta["inputs"]],
        outputs=[tensor(**t) for t in meta["outputs"]],
    )


def _refuse(grpc_context, code: grpc.StatusCode, details: str, empty):
    grpc_context.set_code(code)
    grpc_context.set_details(details)
    return empty


class OipGrpcMethods:
    """The inference service's methods on the ingress (no annotations: the class travels
    pickled, and the generated message classes cannot be unpickled)."""

    async def ServerLive(self, request):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request):
        current = self.routing.current
        return pb.ServerReadyResponse(ready=current.experiment.control in current.versions)

    async def ModelReady(self, request, grpc_context):
        try:
            name = pb.ModelReadyRequest.FromString(request).name
        except DecodeError:
            return _refuse(
                grpc_context, INVALID, "request: not a ModelReadyRequest message", pb.ModelReadyResponse()
            )
        current = self.routing.current
        ready = name == self.cfg.registry.model_name and current.experiment.control in current.versions
        return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request, grpc_context):
        try:
            name = pb.ModelMetadataRequest.FromString(request).name
        except DecodeError:
            message = "request: not a ModelMetadataRequest message"
            return _refuse(grpc_context, INVALID, message, pb.ModelMetadataResponse())
        try:
            version = self.v2_version(name)
        except oip.ModelNotServed as exc:
            return _refuse(grpc_context, NOT_SERVED[exc.status], str(exc), pb.ModelMetadataResponse())
        return metadata_response(oip.model_metadata(self.cfg, name, [version]))

    async def ModelInfer(self, request, grpc_context):
        try:
            name, body = infer_request(request)
            self.v2_version(name)
            return infer_response(await self.v2_infer(name, body))
        except oip.ModelNotServed as exc:
            return _refuse(grpc_context, NOT_SERVED[exc.status], str(exc), pb.ModelInferResponse())
        except oip.OipError as exc:
            return _refuse(grpc_context, INVALID, str(exc), pb.ModelInferResponse())
        except RowError as exc:  # the service's failure (a model that raised, none loaded)
            code = grpc.StatusCode.UNAVAILABLE if exc.status == 503 else grpc.StatusCode.INTERNAL
            return _refuse(grpc_context, code, str(exc), pb.ModelInferResponse())
