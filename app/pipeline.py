"""Stage order: the only module that knows which stage runs after which.

etl -> features (apply, materialize) -> train -> evaluate -> gate -> register.
Each stage is a library call; this module sequences them and reports progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from app.cluster import connect
from app.config import AppConfig
from app.data.etl import EtlReport, run_etl
from app.data.synthetic import generate_chunks, write_dataset
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
    dashboard_url: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    # The demo's serving part:
    url: str | None = None
    served: dict[str, Any] = field(default_factory=dict)
    drift_before: dict | None = None
    drift: dict | None = None
    retrain_job: str | None = None
    retrain_status: str | None = None
    report: dict | None = None
    report_file: Path | None = None


def _stage(result: PipelineResult, name: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    with console.status(f"[bold]{name}[/] ..."):
        value = fn()
    result.stages[name] = round(time.perf_counter() - started, 1)
    console.print(f"[green]✓[/] {name} ({result.stages[name]} s)")
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


def run_pipeline(
    cfg: AppConfig, *, source: str | None = None, tune_samples: int | None = None
) -> PipelineResult:
    """etl -> features apply -> materialize -> train -> evaluate -> gate -> register."""
    connect(cfg.ray)
    result = PipelineResult()
    features = FeatureClient(cfg)
    result.etl = _stage(result, "etl", lambda: run_etl(cfg, source))
    result.feature_partitions = _stage(result, "features apply", features.apply)
    result.materialized = _stage(result, "features materialize", features.materialize)
    splits = _stage(result, "training set (point-in-time)", lambda: build_splits(cfg))
    overrides = None
    if cfg.tune.in_pipeline or tune_samples:
        result.search = _stage(result, "tune", lambda: search(cfg, splits, num_samples=tune_samples))
        overrides = result.search.overrides
    result.training = _stage(
        result,
        "train + evaluate + register",
        lambda: train_and_register(cfg, splits=splits, overrides=overrides),
    )
    return result


def run_demo(
    cfg: AppConfig, *, rows: int, seed: int = 0, tune_samples: int = 4, traffic: int = 2000
) -> PipelineResult:
    """The main job on the built-in data, the whole loop:

    generate -> pipeline (with a small search) -> serve champion + challenger -> replay normal
    traffic with feedback -> replay drifted traffic -> the monitor's drift alert -> the retrain
    Ray Job it submits -> the new challenger joining the experiment -> the experiment report.
    The caller stops serving (or keeps it up).
    """
    cfg = demo_config(cfg, traffic)
    raw = cfg.storage.path("raw")
    dashboard = connect(cfg.ray)
    if not any(raw.glob("*.parquet")):  # written whole or not at all (see write_dataset)
        write_dataset(generate_chunks(rows, seed=seed), raw)
    result = run_pipeline(cfg, source=str(raw), tune_samples=tune_samples)
    result.dashboard_url = dashboard
    serve_and_replay(cfg, result, seed=seed, traffic=traffic)
    return result


def demo_config(cfg: AppConfig, traffic: int) -> AppConfig:
    """The demo's traffic is small: one monitor window per replay, one incident -> one retrain."""
    return cfg.model_copy(
        update={
            "dataset": cfg.dataset.model_copy(update={"source": str(cfg.storage.path("raw"))}),
            "monitor": cfg.monitor.model_copy(update={"window": traffic}),
            "retrain": cfg.retrain.model_copy(update={"schedule": "none", "min_samples": traffic}),
        }
    )


def serve_and_replay(cfg: AppConfig, result: PipelineResult, *, seed: int, traffic: int) -> None:
    from app.data.synthetic import Defects, generate
    from app.files import atomic_write_text
    from app.monitoring import report
    from app.serving import graph
    from app.serving.client import ServiceClient

    clean = Defects(0, 0, 0, 0, 0, 0)
    archive_monitoring(cfg)
    result.url = _stage(result, "serve champion + challenger (A/B)", lambda: graph.start(cfg))
    client = ServiceClient(result.url)
    normal = generate(traffic, seed=seed + 101, defects=clean, first_user=5_000_000).head(traffic)
    result.served["normal"] = _stage(
        result, f"replay {traffic:,} requests + feedback", lambda: client.replay(normal, cfg)
    )
    result.drift_before = client.drift()
    # New data arrives drifted: it lands in the source (the retrain learns from it) and in traffic.
    drifted = generate(traffic, seed=seed + 202, drift=1.0, defects=clean, first_user=9_000_000).head(traffic)
    write_dataset(iter([drifted]), cfg.storage.path("raw", f"drifted-{seed}.parquet"))
    result.served["drifted"] = _stage(
        result, f"replay {traffic:,} drifted requests + feedback", lambda: client.replay(drifted, cfg)
    )
    result.drift = _stage(result, "drift alert", lambda: _wait(lambda: _alert(client), "a drift alert", 90))
    job = _stage(
        result, "retrain submitted by the monitor", lambda: _wait(lambda: _job(client), "a retrain job", 60)
    )
    result.retrain_job = job["job_id"]
    result.retrain_status = _stage(
        result, "retrain job (mlsys pipeline)", lambda: _wait_job(cfg, job["job_id"])
    )
    registry = Registry(cfg)
    challenger = registry.alias_version(CHALLENGER)
    if result.retrain_status == "SUCCEEDED" and challenger is not None:
        _stage(
            result,
            f"challenger v{challenger} joins the experiment",
            lambda: _wait(
                lambda: client.experiment()["models"].get(CHALLENGER) == challenger or None,
                "the new challenger",
                60,
            ),
        )
        # Traffic after the retrain: the A/B split now serves the challenger its share.
        after = generate(traffic, seed=seed + 303, drift=1.0, defects=clean, first_user=9_500_000).head(
            traffic
        )
        result.served["after retrain"] = _stage(
            result, f"replay {traffic:,} requests to champion + challenger", lambda: client.replay(after, cfg)
        )
    result.report = client.report()
    result.report_file = atomic_write_text(
        cfg.storage.reports / "report.html", report.render(client.drift(), result.report)
    )


def archive_monitoring(cfg: AppConfig) -> None:
    """Move an earlier demo run's traffic log and retrain state aside (kept, not deleted), so
    this run's windows and its one incident start fresh."""
    moved = [p for p in (cfg.storage.path("traffic"), cfg.storage.path("monitoring")) if p.exists()]
    if moved:
        archive = cfg.storage.path("archive", time.strftime("%Y%m%dT%H%M%S"))
        archive.mkdir(parents=True)
        for p in moved:
            p.rename(archive / p.name)


def _alert(client) -> dict | None:
    report = client.drift()
    return report if report["alert"] else None


def _job(client) -> dict | None:
    submitted = client.drift()["retrain"]["submitted"]
    return submitted[-1] if submitted else None


def _wait(probe: Callable[[], Any], what: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"no {what} within {timeout_s:.0f} s")


def _wait_job(cfg: AppConfig, job_id: str, timeout_s: float = 900) -> str:
    from ray.job_submission import JobStatus

    from app.monitoring.retrain import jobs_client

    client = jobs_client(cfg)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            if status != JobStatus.SUCCEEDED:
                console.print(client.get_job_logs(job_id)[-3000:])
            return str(status.value)
        time.sleep(2)
    raise TimeoutError(f"retrain job {job_id} still running after {timeout_s:.0f} s")
