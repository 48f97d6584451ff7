"""Where a variant's model runs: in the ingress replica, or in its own `Model` deployment.

`serve.placement: ingress` scores in the replica (one hop; CPU-sized tabular models);
`deployment` sends the batch's feature columns to the variant's deployment (GPU or large
models). The scoring pipeline asks the placement and never branches on it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from app.serving.model_set import FeatureBatch
from app.serving.routing import Routing
from app.serving.scoring import Columns


class InReplica:
    """The variants' predictors live in this replica (loaded by its `ModelSet`)."""

    loads_models = True

    def has(self, variant: str, routing: Routing) -> bool:
        return variant in routing.predictors

    async def score(self, variant: str, cols: Columns, routing: Routing) -> tuple[np.ndarray, int]:
        predictor = routing.predictors[variant]
        return predictor.predict_proba(cols), predictor.version

    async def explain(self, variant: str, cols: Columns, routing: Routing) -> list[dict]:
        # In a thread: explaining takes many forward passes, and the replica's loop keeps
        # answering other requests (and health checks) meanwhile.
        explanation = await asyncio.to_thread(routing.predictors[variant].explain, cols)
        return [explanation.row(i) for i in range(len(explanation.base))]


class ModelDeployments:
    """Each variant's model is its own deployment, reached through its Serve handle."""

    loads_models = False

    def __init__(self, handles: dict):
        self.handles = handles

    def has(self, variant: str, routing: Routing) -> bool:
        return variant in self.handles

    async def score(self, variant: str, cols: Columns, routing: Routing) -> tuple[np.ndarray, int]:
        answer = await self.handles[variant].score.remote(FeatureBatch(cols))
        return answer.scores, answer.version

    async def explain(self, variant: str, cols: Columns, routing: Routing) -> list[dict]:
        return await self.handles[variant].explain.remote(FeatureBatch(cols))


def placement_for(handles: dict | None) -> InReplica | ModelDeployments:
    return ModelDeployments(handles) if handles else InReplica()
