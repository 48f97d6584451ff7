"""What a replica routes requests with, and how it follows the control actor and the registry.

`LiveRouting` holds the current `Routing` (the experiment, its effective split and the models
behind it) and replaces it whole when the `ServeControl` actor's generation moves or a registry
alias names another version, so a batch in flight keeps the routing it started with and a split
can never disagree with the models behind it mid-request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.config import ExperimentConfig
from app.model.predictor import Predictor
from app.serving.assignment import effective_split
from app.serving.control import ControlState
from app.serving.model_set import ModelSet


@dataclass(frozen=True)
class Routing:
    """What one request is routed with: the experiment, its effective split, the models."""

    experiment: ExperimentConfig
    split: dict[str, float]
    versions: dict[str, int]
    predictors: dict[str, Predictor]


class LiveRouting:
    """The replica's current `Routing`, following the control actor (blocking loads run in threads)."""

    def __init__(self, models: ModelSet, control):
        self.models = models
        self.control = control
        self.current: Routing | None = None
        self._applying = asyncio.Lock()

    @property
    def experiment(self) -> ExperimentConfig:
        return self.current.experiment

    def apply(self, state: ControlState) -> Routing:
        """Load what the control actor's state names; requests then follow the new routing."""
        exp = state.experiment
        self.models.refresh(exp.aliases, state.generation)
        split = effective_split(exp.split, set(self.models.versions), exp.control)
        self.current = Routing(exp, split, self.models.versions, self.models.predictors)
        return self.current

    async def apply_async(self, state: ControlState) -> Routing:
        """`apply` in a thread, one at a time: the background sync and an admin change can
        overlap, and a state older than the one applied (fetched before the change) is stale."""
        async with self._applying:
            if state.generation < self.models.generation:
                return self.current
            return await asyncio.to_thread(self.apply, state)

    async def sync(self) -> None:
        """Follow the control actor, and the registry: a retrain job that registers a new
        challenger moves an alias without telling anyone."""
        state = await self.control.state.remote()
        if await asyncio.to_thread(self.models.changed, self.experiment.aliases, state.generation):
            await self.apply_async(state)
