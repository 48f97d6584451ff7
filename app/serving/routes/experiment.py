"""The experiment and its admin routes: GET/PUT /experiment, the report, the rollout, promote,
rollback."""

from fastapi import APIRouter, Depends, HTTPException

from app.config import ExperimentConfig
from app.registry.registry import RegistryError
from app.serving.ingress import Ingress
from app.serving.routes.deps import AuthHeader, current_ingress, require_admin
from app.serving.schemas import Promotion

router = APIRouter()


@router.get("/experiment")
async def get_experiment(ingress: Ingress = Depends(current_ingress)) -> dict:
    return ingress.experiment_view()


@router.get("/experiment/report")
async def experiment_report(ingress: Ingress = Depends(current_ingress)) -> dict:
    return await ingress.experiment_report()


@router.get("/experiment/rollout")
async def rollout_status(ingress: Ingress = Depends(current_ingress)) -> dict:
    """The automatic rollout: the challenger, its step and share, the last decision and why."""
    return await ingress.rollout_status()


@router.put("/experiment")
async def put_experiment(
    body: ExperimentConfig,
    authorization: str | None = AuthHeader,
    ingress: Ingress = Depends(current_ingress),
) -> dict:
    require_admin(ingress, authorization)
    return await ingress.set_experiment(body)


@router.post("/admin/promote")
async def promote(
    body: Promotion | None = None,
    authorization: str | None = AuthHeader,
    ingress: Ingress = Depends(current_ingress),
) -> dict:
    require_admin(ingress, authorization)
    try:
        return await ingress.promote(body.version if body else None)
    except RegistryError as exc:
        status = 404 if body and body.version is not None else 409
        raise HTTPException(status, {"error": str(exc), "field": "version"}) from None


@router.post("/admin/rollback")
async def rollback(
    authorization: str | None = AuthHeader, ingress: Ingress = Depends(current_ingress)
) -> dict:
    require_admin(ingress, authorization)
    try:
        return await ingress.rollback()
    except RegistryError as exc:
        raise HTTPException(409, str(exc)) from None
