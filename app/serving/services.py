"""The replica's services besides scoring, each behind its own FastAPI dependency (routes/deps.py).

`Reads` answers what the service is doing (health, the experiment, drift, the experiment
report, the rollout); `Outcomes` issues feedback receipts and records outcomes; `Admin`
changes the experiment and the models once its caller has shown the admin token. They share
the replica's `LiveRouting`, so a change is served from the next request on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from app.config import AppConfig, ExperimentConfig
from app.data.state import state_store
from app.monitoring.shipper import TrafficShipper
from app.registry import ledger
from app.registry.registry import CHALLENGER, RegistryError
from app.serving import actors, receipts
from app.serving.auth import check_admin, check_producer
from app.serving.producers import producer_store
from app.serving.routing import LiveRouting

# A prediction reaches the monitor within a second or two (the replicas' shippers), longer
# only while the monitor restarts: feedback (with a genuine receipt) for a prediction the
# monitor does not know yet waits for it when younger than this; older, the monitor has
# forgotten it (past `remembered_predictions`) and the outcome is only recorded in the log.
PENDING_GRACE_S = 120.0
UNAUTHENTICATED = "unauthenticated"  # the producer of outcomes taken without a credential


def experiment_view(routing: LiveRouting) -> dict:
    """The experiment as configured, its effective split (over the variants with a model), the models."""
    current = routing.current
    return {
        "experiment": current.experiment.model_dump(),
        "effective_split": current.split,
        "models": current.versions,
        "generation": routing.models.generation,
    }


class Reads:
    def __init__(self, routing: LiveRouting, monitor, shipper: TrafficShipper, rollout: Callable):
        self.routing = routing
        self.monitor = monitor
        self.shipper = shipper
        self.rollout = rollout  # the rollout controller's handle, created on first use

    def health(self) -> dict:
        models = self.routing.models
        return {
            "status": "ok" if self.routing.current.split else "no model",
            "models": self.routing.current.versions,
            "unloadable": models.unloadable,
            "generation": models.generation,
        }

    def experiment(self) -> dict:
        return experiment_view(self.routing)

    async def drift(self):
        self.shipper.pump()  # this replica's predictions reach the monitor first
        return await actors.within(self.monitor.drift.remote())

    async def experiment_report(self):
        self.shipper.pump()
        return await actors.within(self.monitor.report.remote(self.routing.experiment))

    async def rollout_status(self):
        return await actors.within(self.rollout().status.remote())


class Outcomes:
    """Receipts on answers, and the outcomes producers report for them."""

    def __init__(self, cfg: AppConfig, monitor, shipper: TrafficShipper):
        self.cfg = cfg
        self.monitor = monitor
        self.shipper = shipper
        self.key = (
            receipts.load_key(state_store(cfg.storage), cfg.storage.feedback_key)
            if cfg.serve.feedback_auth
            else None
        )
        self.producers = producer_store(cfg)

    def receipt(self, request_id: str) -> str | None:
        return None if self.key is None else receipts.issue(self.key, request_id)

    def producer(self, authorization: str | None) -> str:
        """Who reports: the producer whose token the header holds (AuthError otherwise), or
        UNAUTHENTICATED where `serve.outcomes_auth` is off."""
        if not self.cfg.serve.outcomes_auth:
            return UNAUTHENTICATED
        return check_producer(authorization, self.producers)

    async def record(self, request_id: str, label: int, receipt: str | None = None, *, producer: str) -> str:
        """Record an outcome: "joined" (counted in the experiment), "pending" (its prediction is
        on its way to the monitor) or "recorded" (a prediction the monitor no longer remembers:
        kept in the feedback log, where online learning and retraining join it). ReceiptError
        for a missing or forged receipt (403), one older than the traffic log's retention
        (404), or feedback already recorded (409); nothing is stored then."""
        may_wait = True
        if self.key is not None:
            max_age = self.cfg.monitor.retention_days * 86400
            issued = receipts.verify(self.key, request_id, receipt, max_age_s=max_age)
            may_wait = time.time() - issued < PENDING_GRACE_S
        self.shipper.pump()  # this replica's predictions reach the monitor first
        status = await actors.within(
            self.monitor.feedback.remote(request_id, label, may_wait, producer=producer)
        )
        if status == "duplicate":
            raise receipts.ReceiptError(409, "feedback for this request_id was already recorded")
        return status


class Admin:
    """Experiment and model changes; `check` first (AuthError unless the token is right)."""

    def __init__(self, cfg: AppConfig, routing: LiveRouting, admin_token_sha256: str | None):
        self.cfg = cfg
        self.routing = routing
        self.admin_sha = admin_token_sha256

    def check(self, authorization: str | None) -> None:
        check_admin(authorization, required=self.cfg.serve.admin_auth, token_sha256=self.admin_sha)

    async def set_experiment(self, experiment: ExperimentConfig) -> dict:
        state = await self.routing.control.set_experiment.remote(experiment)
        await self.routing.apply_async(state)
        return experiment_view(self.routing)

    async def promote(self, version: int | None) -> dict:
        """Make `version` (default: the challenger) the champion; RegistryError names what is missing."""
        registry = self.routing.models.registry
        if version is None:
            version = await asyncio.to_thread(registry.alias_version, CHALLENGER)
        if version is None:
            raise RegistryError('no challenger to promote; pass {"version": N}')
        await asyncio.to_thread(registry.promote, version, by=ledger.ADMIN_ROUTE)
        return await self._after_alias_change()

    async def rollback(self) -> dict:
        await asyncio.to_thread(self.routing.models.registry.rollback, by=ledger.ADMIN_ROUTE)
        return await self._after_alias_change()

    async def _after_alias_change(self) -> dict:
        state = await self.routing.control.bump.remote()
        current = await self.routing.apply_async(state)
        return {"models": current.versions, "generation": self.routing.models.generation}
