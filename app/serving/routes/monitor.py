"""Health and the monitor's views: /healthz, /monitor/drift, /report (HTML)."""

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from app.serving.ingress import Ingress
from app.serving.routes.deps import current_ingress

router = APIRouter()


@router.get("/healthz")
async def healthz(ingress: Ingress = Depends(current_ingress)) -> dict:
    return ingress.health()


@router.get("/monitor/drift")
async def monitor_drift(ingress: Ingress = Depends(current_ingress)) -> dict:
    """Per-feature PSI / KS / chi-square of the last window, alert state, retrain decisions."""
    return await ingress.drift()


@router.get("/report", response_class=HTMLResponse)
async def html_report(ingress: Ingress = Depends(current_ingress)):
    """The drift and experiment report as a self-contained HTML page."""
    from app.monitoring import report

    drift = await ingress.drift()
    experiment = await ingress.experiment_report()
    return HTMLResponse(await asyncio.to_thread(report.render, drift, experiment))
