"""The demo: the whole loop on the built-in data, and nothing else.

generate -> pipeline (with a small search) -> serve champion + challenger -> replay traffic
with outcomes -> the world changes (concept drift: the same kind of users, but their outcomes
no longer follow the champion's scores) -> the monitor's labelled windows decay (no input
drift) -> the retrain Ray Job it submits, trained on the served rows and their outcomes alone
(`retrain.data: production`) -> the new challenger entering the automatic rollout -> traffic
until the rollout controller promotes (or rolls back) it -> the promotion ledger; with
`bad_challenger`, an injected worse model rolled back by the controller. The caller stops
serving (or keeps it up). Nothing the service saw is written into the raw files.

Each run starts from a clean slate: an earlier run's registry, serving state, traffic log and
monitoring state move to `archive/<time>/` (kept, not deleted), so that every run shows the
same loop; the generated data, the warehouse and the features are reused.
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cluster.connection import connect
from app.config import AppConfig
from app.data.synthetic import generate_chunks, write_dataset
from app.demo_steps import (
    archive_earlier_run,
    decayed,
    register_worse,
    replay,
    retrained_on,
    submitted_job,
    traffic_rows,
    wait_for,
    wait_job,
)
from app.files import atomic_write_text
from app.pipeline import PipelineResult, run_pipeline, stage
from app.registry.registry import CHALLENGER, Registry

if TYPE_CHECKING:
    from app.monitoring.experiment import ExperimentReport
    from app.monitoring.messages import DriftReport
    from app.monitoring.rollout import RolloutStatus


@dataclass
class DemoResult:
    pipeline: PipelineResult
    dashboard_url: str | None = None
    url: str | None = None
    served: dict[str, Any] = field(default_factory=dict)
    drift_before: dict | None = None
    decay: DriftReport | None = None  # the monitor's report when the labelled windows decayed
    retrain_job: str | None = None
    retrain_reason: str | None = None  # what triggered it
    retrain_data: str | None = None  # what its model learned from
    retrain_status: str | None = None
    report: ExperimentReport | None = None
    report_file: Path | None = None
    rollout: RolloutStatus | None = None  # the rollout of the retrained challenger, as it ended
    bad_rollout: RolloutStatus | None = None  # the injected worse model's rollout
    ledger: list = field(default_factory=list)  # this run's entries of the promotion ledger
    started_at: str = ""  # ISO time in UTC, as the ledger's entries have it

    @property
    def stages(self) -> dict[str, float]:
        return self.pipeline.stages


def run_demo(
    cfg: AppConfig,
    *,
    rows: int,
    seed: int = 0,
    tune_samples: int = 4,
    traffic: int = 2000,
    bad_challenger: bool = False,
) -> DemoResult:
    """The main job on the built-in data: the pipeline, then serving, drift and the retrain."""
    cfg = demo_config(cfg, traffic)
    started_at = datetime.now(timezone.utc).isoformat()
    raw = cfg.storage.raw
    archive_earlier_run(cfg)
    dashboard = connect(cfg.ray)
    if not any(raw.glob("*.parquet")):  # written whole or not at all (see write_dataset)
        write_dataset(generate_chunks(rows, seed=seed), raw)
    warehouse = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"data": "warehouse"})})
    result = DemoResult(
        run_pipeline(warehouse, source=str(raw), tune_samples=tune_samples),
        dashboard_url=dashboard,
        started_at=started_at,
    )
    serve_and_replay(cfg, result, seed=seed, traffic=traffic, bad_challenger=bad_challenger)
    return result


def demo_config(cfg: AppConfig, traffic: int) -> AppConfig:
    """The demo's traffic is small: a monitor window of a quarter replay, so that a variant
    completes windows even while a challenger from an earlier run holds part of the split (an
    alert needs a complete window); PSI's noise at 250 rows is a fraction of `psi_alert`.
    Labelled windows of a quarter replay too (AUC's noise at 250 outcomes is a fraction of the
    decay a concept drift brings). The retrain (the job the monitor submits) learns
    from production alone; the demo's first pipeline trains on the warehouse. One incident ->
    one retrain."""
    window = max(250, traffic // 4)
    return cfg.model_copy(
        update={
            "dataset": cfg.dataset.model_copy(update={"source": str(cfg.storage.raw)}),
            "monitor": cfg.monitor.model_copy(
                update={"window": window, "performance_window": max(100, traffic // 4)}
            ),
            # drift_minutes 0: the demo's windows arrive within seconds of each other
            "retrain": cfg.retrain.model_copy(
                update={"schedule": "none", "min_samples": window, "drift_minutes": 0, "data": "production"}
            ),
            # Minutes of traffic, not days: steps on outcomes alone, a look every second, and
            # promotion when the challenger is better or no more than 5 points worse.
            "rollout": cfg.rollout.model_copy(
                update={
                    "mode": "auto",
                    "steps": [25.0, 50.0, 100.0],
                    "min_outcomes": max(100, traffic // 10),
                    "min_minutes": 0.0,
                    "check_seconds": 1.0,
                    "margin": 0.05,
                }
            ),
        }
    )


def serve_and_replay(
    cfg: AppConfig, result: DemoResult, *, seed: int, traffic: int, bad_challenger: bool = False
) -> None:
    from app.monitoring import report
    from app.monitoring.experiment import ExperimentReport
    from app.serving import app as serving_app
    from app.serving.client import ServiceClient
    from app.serving.producers import producer_store

    result.url = stage(result.stages, "serve champion + challenger (A/B)", lambda: serving_app.start(cfg))
    # The replay reports outcomes as a system of record would: with a producer's token.
    demo_producer = producer_store(cfg).token_for("demo")
    client = ServiceClient(result.url, outcomes_token=demo_producer)
    before, after = 0.0, 1.0  # the warehouse's world, then every effect reversed
    normal = traffic_rows(traffic, seed=seed + 101, concept=before, first_user=5_000_000)
    result.served["normal"] = stage(
        result.stages, f"replay {traffic:,} requests + outcomes", lambda: replay(client, normal, cfg)
    )
    result.drift_before = client.drift()
    # The world changes: the same kind of users, but outcomes that no longer follow the
    # champion's scores. Only outcomes show it; the retrain learns it from them.
    shifted = traffic_rows(2 * traffic, seed=seed + 202, concept=after, first_user=9_000_000)
    result.served["concept drift"] = stage(
        result.stages,
        f"replay {2 * traffic:,} requests + outcomes after the world changed (concept drift)",
        lambda: replay(client, shifted, cfg),
    )
    challenger = retrain_on_its_own(cfg, client, result)
    if challenger is not None:
        result.rollout = roll_out(
            cfg, client, result, challenger, seed=seed + 303, traffic=traffic, concept=after, what=""
        )
    if bad_challenger:
        worse = stage(
            result.stages,
            "inject a worse challenger",
            lambda: register_worse(cfg, seed=seed + 404, concept=after),
        )
        result.bad_rollout = roll_out(
            cfg, client, result, worse, seed=seed + 505, traffic=traffic, concept=after, what="worse "
        )
    result.ledger = [e for e in Registry(cfg).promotion_ledger() if e.at >= result.started_at]
    result.report = ExperimentReport.model_validate(client.report())
    result.report_file = atomic_write_text(
        cfg.storage.demo_page, report.render(client.drift(), result.report)
    )


def retrain_on_its_own(cfg: AppConfig, client, result: DemoResult) -> int | None:
    """What the service does by itself once the world changed: the labelled windows decay, the
    monitor submits a retrain, the job registers a new challenger (returned; None if the job
    failed or its candidate did not pass the gate)."""
    result.decay = stage(
        result.stages,
        "labelled performance decays",
        lambda: wait_for(lambda: decayed(client), "the labelled windows to decay", 90),
    )
    job = stage(
        result.stages,
        "retrain submitted by the monitor",
        lambda: wait_for(lambda: submitted_job(client), "a retrain job", 60),
    )
    result.retrain_reason = f"{job['trigger']}: {job['reason']}"
    result.retrain_job = job["job_id"]
    registry = Registry(cfg)
    earlier = registry.alias_version(CHALLENGER)  # the job registers its model as the challenger
    result.retrain_status = stage(
        result.stages, "retrain job (mlsys pipeline)", lambda: wait_job(cfg, job["job_id"])
    )
    if result.retrain_status != "SUCCEEDED":
        return None
    challenger = registry.alias_version(CHALLENGER)
    new = challenger if challenger != earlier else None
    result.retrain_data = retrained_on(registry, new)
    return new


MAX_ROUNDS = 12  # rounds of `traffic` requests a rollout gets in the demo before it is left running


def roll_out(
    cfg: AppConfig,
    client,
    result: DemoResult,
    version: int,
    *,
    seed: int,
    traffic: int,
    concept: float,
    what: str,
) -> RolloutStatus:
    """Traffic of the `concept` world (with outcomes) round after round until the rollout
    controller has promoted or rolled back `version`; returns its last rollout status."""
    from app.monitoring.rollout import RolloutStatus

    stage(
        result.stages,
        f"{what}challenger v{version} enters the rollout",
        lambda: wait_for(
            lambda: (
                (client.rollout()["challenger"] == version and client.experiment()["models"].get(CHALLENGER))
                or None
            ),
            "the challenger's rollout",
            60,
        ),
    )

    def until_decided() -> RolloutStatus:
        served: dict[str, int] = {}
        for i in range(MAX_ROUNDS):
            rows = traffic_rows(traffic, seed=seed + i, concept=concept, first_user=9_500_000)
            for variant, n in replay(client, rows, cfg).items():
                served[variant] = served.get(variant, 0) + n
            if client.rollout()["status"] != "running":
                break
            time.sleep(1.5)  # the controller looks every second
        result.served[f"{what}rollout of v{version}"] = served
        return RolloutStatus.model_validate(client.rollout())

    return stage(result.stages, f"{what}rollout of v{version}", until_decided)


def stop_demo() -> None:
    """Stop the demo's service and the local cluster it started (nothing to do if none)."""
    import ray

    if ray.is_initialized():
        from app.serving import app as serving_app

        with suppress(Exception):  # the service may never have started
            serving_app.stop()
        ray.shutdown()
