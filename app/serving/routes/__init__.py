"""The HTTP API: one router per resource over the replica's services, assembled by `build_api`.

Routes are plain functions; each receives what it needs (the `Ingress` for scoring, a service
for the rest) through the dependencies in `deps.py`, which all start from `current_ingress`
(under Serve, the replica's own object; in tests, any `Ingress` by `api.dependency_overrides`).
They translate HTTP to calls and errors to 4xx bodies that name the field, and hold no logic
of their own.
"""

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.config import AppConfig
from app.serving.actors import MonitorUnavailable
from app.serving.http import BodySizeLimit, validation_error_response
from app.serving.routes import experiment, monitor, predict, v2
from app.serving.schemas import request_models


def build_api(cfg: AppConfig) -> FastAPI:
    """The FastAPI app for this config (the /predict body is typed from the dataset section)."""
    api = FastAPI(
        title="mlsys",
        description="Predictions with an A/B experiment; see /docs. Admin routes need a Bearer token.",
    )
    api.add_middleware(BodySizeLimit, max_bytes=cfg.serve.max_body_bytes)
    api.add_exception_handler(RequestValidationError, validation_error_response)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(MonitorUnavailable, _monitor_unavailable)
    api.include_router(predict.router(request_models(cfg).PredictRequest))
    for module in (experiment, monitor, v2):
        api.include_router(module.router)
    return api


async def _monitor_unavailable(request, exc: MonitorUnavailable):
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def _http_error(request, exc: HTTPException):
    body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
