"""Health and the monitor's views: /healthz, /monitor/drift, /report (HTML)."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from app.serving.routes.deps import IngressDep, ReadsDep

router = APIRouter()


@router.get("/healthz")
async def healthz(ingress: IngressDep) -> dict:
    ingress.ensure_background()
    return ingress.reads.health()


@router.get("/monitor/drift")
async def monitor_drift(reads: ReadsDep):
    """Per-feature PSI / KS / chi-square of the last window, alert state, retrain decisions."""
    return await reads.drift()


@router.get("/report", response_class=HTMLResponse)
async def html_report(reads: ReadsDep):
    """The drift and experiment report as a self-contained HTML page."""
    from app.monitoring import report

    drift = await reads.drift()
    experiment = await reads.experiment_report()
    return HTMLResponse(await asyncio.to_thread(report.render, drift, experiment))
