"""The experiment and its admin routes: GET/PUT /experiment, the report, the rollout, promote,
rollback."""

from fastapi import APIRouter, HTTPException

from app.config import ExperimentConfig
from app.registry.registry import RegistryError
from app.serving.routes.deps import AdminDep, ReadsDep
from app.serving.schemas import Promotion

router = APIRouter()


@router.get("/experiment")
async def get_experiment(reads: ReadsDep) -> dict:
    return reads.experiment()


@router.get("/experiment/report")
async def experiment_report(reads: ReadsDep):
    return await reads.experiment_report()


@router.get("/experiment/rollout")
async def rollout_status(reads: ReadsDep):
    """The automatic rollout: the challenger, its step and share, the last decision and why."""
    return await reads.rollout_status()


@router.put("/experiment")
async def put_experiment(body: ExperimentConfig, admin: AdminDep) -> dict:
    return await admin.set_experiment(body)


@router.post("/admin/promote")
async def promote(admin: AdminDep, body: Promotion | None = None) -> dict:
    try:
        return await admin.promote(body.version if body else None)
    except RegistryError as exc:
        status = 404 if body and body.version is not None else 409
        raise HTTPException(status, {"error": str(exc), "field": "version"}) from None


@router.post("/admin/rollback")
async def rollback(admin: AdminDep) -> dict:
    try:
        return await admin.rollback()
    except RegistryError as exc:
        raise HTTPException(409, str(exc)) from None
