"""Stage order: the only module that knows which stage runs after which.

etl -> features (apply, materialize) -> train -> evaluate -> gate -> register.
Each stage is a library call; this module sequences them and reports progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from app.cluster import connect
from app.config import AppConfig
from app.data.etl import EtlReport, run_etl
from app.features.store import FeatureClient
from app.registry.registry import CHALLENGER, CHAMPION, Registry
from app.training.dataset import Splits, build_splits
from app.training.evaluate import passes_gate
from app.training.fit import evaluate_bundle, fit_candidate, make_preprocessor
from app.training.tune import TORCH_SPACE, SearchResult, tune_random_forest, tune_torch

console = Console(stderr=True)


@dataclass
class TrainOutcome:
    version: int | None  # None: the gate refused the candidate
    alias: str | None
    gate: str
    metrics: dict


@dataclass
class PipelineResult:
    etl: EtlReport | None = None
    feature_partitions: int = 0
    materialized: tuple | None = None
    training: TrainOutcome | None = None
    search: SearchOutcome | None = None
    stages: dict[str, float] = field(default_factory=dict)


def stage(stages: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    """Run one stage with a spinner, print its time and keep it in `stages`."""
    started = time.perf_counter()
    with console.status(f"[bold]{name}[/] ..."):
        value = fn()
    stages[name] = round(time.perf_counter() - started, 1)
    console.print(f"[green]✓[/] {name} ({stages[name]} s)")
    return value


def train_and_register(
    cfg: AppConfig, *, splits: Splits | None = None, overrides: dict | None = None
) -> TrainOutcome:
    """Train a candidate, score it and the champion on the same holdout, gate, register.

    The first model becomes the champion; later ones that pass the gate become the challenger.
    """
    splits = splits or build_splits(cfg)
    bundle = fit_candidate(cfg, splits, overrides=overrides)
    registry = Registry(cfg)
    champion = None
    if registry.alias_version(CHAMPION) is not None:
        champion = evaluate_bundle(registry.load(CHAMPION), splits, cfg.dataset.label)["holdout"]
    passed, reason = passes_gate(
        bundle.metrics["holdout"], champion, metric=cfg.registry.gate_metric, margin=cfg.registry.gate_margin
    )
    bundle.metrics["gate"] = {"passed": passed, "reason": reason}
    if not passed:
        return TrainOutcome(version=None, alias=None, gate=reason, metrics=bundle.metrics)
    alias = CHAMPION if champion is None else CHALLENGER
    params = {**cfg.train.model_dump(), **(overrides or {})}
    version = registry.register(bundle, params=params, alias=alias)
    return TrainOutcome(version=version, alias=alias, gate=reason, metrics=bundle.metrics)


@dataclass
class SearchOutcome:
    torch: SearchResult
    forest: SearchResult

    @property
    def overrides(self) -> dict:
        """The best torch trial's hyperparameters, for the final training run."""
        return {k: self.torch.best_config[k] for k in TORCH_SPACE}


def search(cfg: AppConfig, splits: Splits | None = None, *, num_samples: int | None = None) -> SearchOutcome:
    """Ray Tune over the torch model (ASHA) and the random-forest baseline, on the same split."""
    splits = splits or build_splits(cfg)
    pre = make_preprocessor(cfg, splits.train)
    return SearchOutcome(
        torch=tune_torch(cfg, splits.train, splits.valid, pre, num_samples=num_samples),
        forest=tune_random_forest(cfg, splits.train, pre, num_samples=num_samples),
    )


def evaluate_registered(cfg: AppConfig, ref: str | int) -> dict:
    """A registered model (alias or version) scored on the current holdout."""
    return evaluate_bundle(Registry(cfg).load(ref), build_splits(cfg), cfg.dataset.label)


def run_pipeline(
    cfg: AppConfig, *, source: str | None = None, tune_samples: int | None = None
) -> PipelineResult:
    """etl -> features apply -> materialize -> train -> evaluate -> gate -> register."""
    connect(cfg.ray)
    result = PipelineResult()
    features = FeatureClient(cfg)
    result.etl = stage(result.stages, "etl", lambda: run_etl(cfg, source))
    result.feature_partitions = stage(result.stages, "features apply", features.apply)
    result.materialized = stage(result.stages, "features materialize", features.materialize)
    splits = stage(result.stages, "training set (point-in-time)", lambda: build_splits(cfg))
    overrides = None
    if cfg.tune.in_pipeline or tune_samples:
        result.search = stage(result.stages, "tune", lambda: search(cfg, splits, num_samples=tune_samples))
        overrides = result.search.overrides
    result.training = stage(
        result.stages,
        "train + evaluate + register",
        lambda: train_and_register(cfg, splits=splits, overrides=overrides),
    )
    return result
