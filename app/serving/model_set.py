"""The variants' models as one replica sees them, and the deployment that holds one outside the ingress.

`ModelSet` resolves registry aliases to versions and loads the models behind them; the ingress
follows it through `routing.LiveRouting` (`serve.placement: ingress` loads the models in the
replica), and `Model` wraps it as one variant's own deployment (`deployment`).
"""

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
from ray import serve

from app.config import AppConfig
from app.model.bundle import BundleError
from app.model.predictor import Predictor
from app.registry.registry import Registry, RegistryError

log = logging.getLogger(__name__)


class ModelSet:
    """The variants' models as seen by one replica: alias -> (version, Predictor | None)."""

    def __init__(self, cfg: AppConfig, *, load: bool):
        self.cfg = cfg
        self.registry = Registry(cfg)
        self.load = load  # False: only versions (the models live in model deployments)
        self.versions: dict[str, int] = {}
        self.predictors: dict[str, Predictor] = {}
        self.generation = -1  # of the control actor, when these were loaded
        self.unloadable: dict[str, int] = {}  # alias -> version that failed to load

    def resolve(self, aliases: list[str]) -> dict[str, int]:
        """The version behind each alias that has one (a registry query; blocking)."""
        found = {alias: self.registry.alias_version(alias) for alias in aliases}
        return {alias: v for alias, v in found.items() if v is not None}

    def changed(self, aliases: list[str], generation: int) -> bool:
        """Whether the control generation moved, or an alias now names another version: a retrain
        job that registers a challenger moves an alias without telling anyone (blocking)."""
        return generation != self.generation or self.resolve(aliases) != {**self.versions, **self.unloadable}

    def refresh(self, aliases: list[str], generation: int = -1) -> dict[str, int]:
        """Resolve each alias in the registry and load models that changed (blocking I/O).

        A version that cannot be loaded (a tampered or missing bundle) is logged, counted and
        skipped: its share goes to the variants that loaded, and it is not retried until its
        alias moves, so the others keep serving and following promotions."""
        resolved, versions, predictors, unloadable = self.resolve(aliases), {}, {}, {}
        for alias, version in resolved.items():
            if not self.load:
                versions[alias] = version
                continue
            current = self.predictors.get(alias)
            if current is not None and current.version == version:
                versions[alias], predictors[alias] = version, current
                continue
            if self.unloadable.get(alias) == version:
                unloadable[alias] = version
                continue
            try:
                bundle = self.registry.load(version)
            except (BundleError, RegistryError, OSError) as exc:
                log.error(
                    "alias %s: version %s cannot be loaded, serving without it: %s", alias, version, exc
                )
                unloadable[alias] = version
                continue
            predictors[alias] = Predictor.from_bundle(
                bundle, version=version, threshold=self.cfg.serve.threshold
            )
            versions[alias] = version
        # Swap whole dicts: a request in flight keeps the objects it already holds.
        self.versions, self.predictors, self.generation = versions, predictors, generation
        self.unloadable = unloadable
        return versions


@dataclass(frozen=True)
class FeatureBatch:
    """A batch of model-feature columns, one array per feature (what a `Model` deployment scores)."""

    columns: dict[str, np.ndarray]


@dataclass(frozen=True)
class ModelScores:
    """A `Model` deployment's answer: the version that scored and one probability per row."""

    version: int
    scores: np.ndarray


@serve.deployment(name="model", max_ongoing_requests=64, health_check_period_s=5)
class Model:
    """One variant's model in its own deployment (placement: deployment); follows ServeControl."""

    def __init__(self, cfg_data: dict, alias: str):
        import torch

        from app.serving.control import get_control

        torch.set_num_threads(1)
        self.cfg = AppConfig.model_validate(cfg_data)
        self.alias = alias
        self.models = ModelSet(self.cfg, load=True)
        self.models.refresh([alias])
        self.control = get_control(self.cfg)
        self._last_sync = 0.0

    async def _follow(self) -> None:
        if time.monotonic() - self._last_sync < self.cfg.serve.poll_interval_s:
            return
        self._last_sync = time.monotonic()
        generation = (await self.control.state.remote()).generation
        if await asyncio.to_thread(self.models.changed, [self.alias], generation):
            await asyncio.to_thread(self.models.refresh, [self.alias], generation)

    async def score(self, batch: FeatureBatch) -> ModelScores:
        """Scores for a batch's feature columns as the ingress holds them: a column keeps its
        values' types (rebuilding a frame from row dicts would turn integer hours into floats
        as soon as one is missing)."""
        predictor = await self._predictor()
        return ModelScores(predictor.version, predictor.predict_proba(batch.columns))

    async def explain(self, batch: FeatureBatch) -> list[dict]:
        """Each row's features' contributions to its score (app/model/explain.py), as plain values."""
        explanation = (await self._predictor()).explain(batch.columns)
        return [explanation.row(i) for i in range(len(explanation.base))]

    async def _predictor(self):
        await self._follow()
        predictor = self.models.predictors.get(self.alias)
        if predictor is None:
            raise RuntimeError(f"no model behind alias {self.alias!r}")
        return predictor
