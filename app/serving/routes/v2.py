"""Open Inference Protocol v2 (KServe v2 / Triton HTTP): metadata of the control variant; inference
through the same scoring pipeline as /predict (assignment, batching, shadow, the traffic log)."""

from importlib.metadata import version

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from app.serving import oip
from app.serving.ingress import Ingress
from app.serving.routes.deps import IngressDep
from app.serving.scoring import RowError

router = APIRouter(prefix="/v2")


def _version(ingress: Ingress, name: str) -> int:
    """The control variant's version behind the v2 model `name` (404 unknown, 503 none loaded)."""
    try:
        return ingress.v2_version(name)
    except oip.ModelNotServed as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.get("")
async def server_metadata() -> dict:
    return oip.server_metadata(version("mlsys"))


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready")
async def ready(ingress: IngressDep):
    current = ingress.routing.current
    is_ready = current.experiment.control in current.versions
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/{name}")
async def metadata(name: str, ingress: IngressDep) -> dict:
    return oip.model_metadata(ingress.cfg, name, [_version(ingress, name)])


@router.get("/models/{name}/ready")
async def model_ready(name: str, ingress: IngressDep) -> dict:
    _version(ingress, name)
    return {"name": name, "ready": True}


@router.post("/models/{name}/infer")
async def infer(name: str, request: Request, ingress: IngressDep):
    """Tensors in the body as JSON (any content type) or with the binary tensor extension."""
    _version(ingress, name)  # 404 / 503 before any work
    try:
        body = oip.parse_request(await request.body(), request.headers.get(oip.HEADER_LENGTH))
        resp = await ingress.v2_infer(name, body)
    except oip.OipError as exc:
        raise HTTPException(400, str(exc)) from None
    except RowError as exc:  # the service's failure (a model that raised, no model loaded)
        raise HTTPException(exc.status, str(exc)) from None
    if not oip.wants_binary(body):
        return resp
    content, header_length = oip.binary_response(resp)
    return Response(
        content,
        media_type="application/octet-stream",
        headers={oip.HEADER_LENGTH: str(header_length)},
    )
