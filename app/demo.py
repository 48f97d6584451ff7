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
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import progress
from app.cluster.connection import connect
from app.config import AppConfig
from app.data.synthetic import Defects, generate, generate_chunks, write_dataset
from app.files import atomic_write_text
from app.pipeline import PipelineResult, console, run_pipeline, stage
from app.registry.registry import CHALLENGER, Registry

if TYPE_CHECKING:
    from app.monitoring.experiment import ExperimentReport
    from app.monitoring.messages import DriftReport
    from app.monitoring.rollout import RolloutStatus

CLEAN = Defects(0, 0, 0, 0, 0, 0)  # the demo's traffic: well-formed rows


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
    from app.serving.producers import ProducerStore

    result.url = stage(result.stages, "serve champion + challenger (A/B)", lambda: serving_app.start(cfg))
    # The replay reports outcomes as a system of record would: with a producer's token.
    demo_producer = ProducerStore(cfg.storage.producers).token_for("demo")
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
    result.decay = stage(
        result.stages,
        "labelled performance decays",
        lambda: _wait(lambda: _decayed(client), "the labelled windows to decay", 90),
    )
    job = stage(
        result.stages,
        "retrain submitted by the monitor",
        lambda: _wait(lambda: _job(client), "a retrain job", 60),
    )
    result.retrain_reason = f"{job['trigger']}: {job['reason']}"
    result.retrain_job = job["job_id"]
    registry = Registry(cfg)
    before = registry.alias_version(CHALLENGER)  # the job registers its model as the challenger
    result.retrain_status = stage(
        result.stages, "retrain job (mlsys pipeline)", lambda: _wait_job(cfg, job["job_id"])
    )
    challenger = registry.alias_version(CHALLENGER)
    if result.retrain_status == "SUCCEEDED":
        result.retrain_data = retrained_on(registry, challenger if challenger != before else None)
    if result.retrain_status == "SUCCEEDED" and challenger is not None and challenger != before:
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
    result.ledger = [e for e in registry.promotion_ledger() if e.at >= result.started_at]
    result.report = ExperimentReport.model_validate(client.report())
    result.report_file = atomic_write_text(
        cfg.storage.reports / "report.html", report.render(client.drift(), result.report)
    )


def retrained_on(registry: Registry, version: int | None) -> str:
    """What the retrain's model learned from, as its lineage records it."""
    if version is None:
        return "its candidate did not pass the gate: no new challenger"
    lineage = registry.load(version).lineage
    rows = lineage.get("production_rows")
    return f"v{version} trained on {lineage.get('training_data', '?')}" + (
        f" ({rows} served rows with their outcomes)" if rows else ""
    )


def traffic_rows(n: int, *, seed: int, concept: float, first_user: int):
    """`n` well-formed requests drawn from 4n generated rows: the generator gives each user ~8
    events, and a window of live traffic holds hundreds of users, not a few dozen."""
    rows = generate(4 * n, seed=seed, concept=concept, defects=CLEAN, first_user=first_user)
    return rows.sample(n, random_state=seed).reset_index(drop=True)


REPLAY_BATCH = 250  # requests per /predict call


def replay(client, rows, cfg: AppConfig) -> dict[str, int]:
    """`client.replay(rows)` a batch at a time, under a bar of the requests answered so far;
    returns how many predictions each variant served."""
    served: Counter = Counter()
    with progress.steps("requests", len(rows)) as done:
        for start in range(0, len(rows), REPLAY_BATCH):
            served.update(client.replay(rows.iloc[start : start + REPLAY_BATCH], cfg, batch=REPLAY_BATCH))
            done(min(start + REPLAY_BATCH, len(rows)))
    return dict(served)


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
        lambda: _wait(
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


def register_worse(cfg: AppConfig, *, seed: int, concept: float) -> int:
    """A challenger that learned the opposite of the truth (the champion fine-tuned on flipped
    labels of fresh data of the `concept` world): what a broken training run could register."""
    from app.features.transforms import add_features
    from app.monitoring.online import partial_fit
    from app.registry.registry import CHAMPION

    registry = Registry(cfg)
    rows = add_features(generate(4000, seed=seed, concept=concept, defects=CLEAN), cfg)
    flipped = 1 - rows[cfg.dataset.label].to_numpy(int)
    worse = partial_fit(registry.load(CHAMPION), rows, flipped, lr=1e-2, epochs=5)
    return registry.register(
        worse, params={"injected": "flipped labels"}, alias=CHALLENGER, reason="injected worse model (demo)"
    )


def archive_earlier_run(cfg: AppConfig) -> None:
    """Move an earlier demo run's registry, serving state, production table, traffic log and
    monitoring state aside (kept, not deleted): this run's models, windows and incidents start
    fresh."""
    st = cfg.storage
    registry = (st.mlflow_db, st.mlartifacts, st.bundles)  # the local registry (not a tracking server)
    kept = (*registry, st.path("serving"), st.production, st.traffic, st.monitoring)
    moved = [p for p in kept if p.exists()]
    if moved:
        archive = st.archive / time.strftime("%Y%m%dT%H%M%S")
        archive.mkdir(parents=True)
        for p in moved:
            p.rename(archive / p.name)


def _decayed(client) -> DriftReport | None:
    from app.monitoring.messages import DriftReport

    report = DriftReport.model_validate(client.drift())
    return report if report.performance_alert else None


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
    raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")


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


def stop_demo() -> None:
    """Stop the demo's service and the local cluster it started (nothing to do if none)."""
    import ray

    if ray.is_initialized():
        from app.serving import app as serving_app

        with suppress(Exception):  # the service may never have started
            serving_app.stop()
        ray.shutdown()
