"""Stage order: the only module that knows which stage runs after which.

etl -> features (apply, materialize) -> [tune/train -> evaluate -> register: later stages].
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
from app.data.synthetic import generate_chunks, write_dataset
from app.features.store import FeatureClient

console = Console(stderr=True)


@dataclass
class PipelineResult:
    etl: EtlReport | None = None
    feature_partitions: int = 0
    materialized: tuple | None = None
    stages: dict[str, float] = field(default_factory=dict)


def _stage(result: PipelineResult, name: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    with console.status(f"[bold]{name}[/] ..."):
        value = fn()
    result.stages[name] = round(time.perf_counter() - started, 1)
    console.print(f"[green]✓[/] {name} ({result.stages[name]} s)")
    return value


def run_pipeline(cfg: AppConfig, *, source: str | None = None) -> PipelineResult:
    """etl -> features apply -> features materialize (training stages join in later issues)."""
    connect(cfg.ray)
    result = PipelineResult()
    features = FeatureClient(cfg)
    result.etl = _stage(result, "etl", lambda: run_etl(cfg, source))
    result.feature_partitions = _stage(result, "features apply", features.apply)
    result.materialized = _stage(result, "features materialize", features.materialize)
    return result


def run_demo(cfg: AppConfig, *, rows: int, seed: int = 0) -> PipelineResult:
    """The main job on the built-in data: generate, then run every stage built so far."""
    raw = cfg.storage.path("raw")
    connect(cfg.ray)
    if not any(raw.glob("*.parquet")):
        write_dataset(generate_chunks(rows, seed=seed), raw)
    return run_pipeline(cfg, source=str(raw))
