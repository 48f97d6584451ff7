"""The demo: the whole loop on the built-in data, and nothing else.

generate -> pipeline (with a small search) -> serve champion + challenger -> replay normal
traffic with feedback -> replay drifted traffic -> the monitor's drift alert -> the retrain
Ray Job it submits -> the new challenger joining the experiment -> the experiment report.
The caller stops serving (or keeps it up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.cluster import connect
from app.config import AppConfig
from app.data.synthetic import Defects, generate, generate_chunks, write_dataset
from app.files import atomic_write_text
from app.pipeline import PipelineResult, console, run_pipeline, stage
from app.registry.registry import CHALLENGER, Registry


@dataclass
class DemoResult:
    pipeline: PipelineResult
    dashboard_url: str | None = None
    url: str | None = None
    served: dict[str, Any] = field(default_factory=dict)
    drift_before: dict | None = None
    drift: dict | None = None
    retrain_job: str | None = None
    retrain_status: str | None = None
    report: dict | None = None
    report_file: Path | None = None

    @property
    def stages(self) -> dict[str, float]:
        return self.pipeline.stages


def run_demo(
    cfg: AppConfig, *, rows: int, seed: int = 0, tune_samples: int = 4, traffic: int = 2000
) -> DemoResult:
    """The main job on the built-in data: the pipeline, then serving, drift and the retrain."""
    cfg = demo_config(cfg, traffic)
    raw = cfg.storage.raw
    dashboard = connect(cfg.ray)
    if not any(raw.glob("*.parquet")):  # written whole or not at all (see write_dataset)
        write_dataset(generate_chunks(rows, seed=seed), raw)
    result = DemoResult(
        run_pipeline(cfg, source=str(raw), tune_samples=tune_samples), dashboard_url=dashboard
    )
    serve_and_replay(cfg, result, seed=seed, traffic=traffic)
    return result


def demo_config(cfg: AppConfig, traffic: int) -> AppConfig:
    """The demo's traffic is small: one monitor window per replay, one incident -> one retrain."""
    return cfg.model_copy(
        update={
            "dataset": cfg.dataset.model_copy(update={"source": str(cfg.storage.raw)}),
            "monitor": cfg.monitor.model_copy(update={"window": traffic}),
            "retrain": cfg.retrain.model_copy(update={"schedule": "none", "min_samples": traffic}),
        }
    )


def serve_and_replay(cfg: AppConfig, result: DemoResult, *, seed: int, traffic: int) -> None:
    from app.monitoring import report
    from app.serving import app as serving_app
    from app.serving.client import ServiceClient

    clean = Defects(0, 0, 0, 0, 0, 0)
    archive_monitoring(cfg)
    result.url = stage(result.stages, "serve champion + challenger (A/B)", lambda: serving_app.start(cfg))
    client = ServiceClient(result.url)
    normal = generate(traffic, seed=seed + 101, defects=clean, first_user=5_000_000).head(traffic)
    result.served["normal"] = stage(
        result.stages, f"replay {traffic:,} requests + feedback", lambda: client.replay(normal, cfg)
    )
    result.drift_before = client.drift()
    # New data arrives drifted: it lands in the source (the retrain learns from it) and in traffic.
    drifted = generate(traffic, seed=seed + 202, drift=1.0, defects=clean, first_user=9_000_000).head(traffic)
    write_dataset(iter([drifted]), cfg.storage.raw / f"drifted-{seed}.parquet")
    result.served["drifted"] = stage(
        result.stages, f"replay {traffic:,} drifted requests + feedback", lambda: client.replay(drifted, cfg)
    )
    result.drift = stage(
        result.stages, "drift alert", lambda: _wait(lambda: _alert(client), "a drift alert", 90)
    )
    job = stage(
        result.stages,
        "retrain submitted by the monitor",
        lambda: _wait(lambda: _job(client), "a retrain job", 60),
    )
    result.retrain_job = job["job_id"]
    result.retrain_status = stage(
        result.stages, "retrain job (mlsys pipeline)", lambda: _wait_job(cfg, job["job_id"])
    )
    registry = Registry(cfg)
    challenger = registry.alias_version(CHALLENGER)
    if result.retrain_status == "SUCCEEDED" and challenger is not None:
        stage(
            result.stages,
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
        result.served["after retrain"] = stage(
            result.stages,
            f"replay {traffic:,} requests to champion + challenger",
            lambda: client.replay(after, cfg),
        )
    result.report = client.report()
    result.report_file = atomic_write_text(
        cfg.storage.reports / "report.html", report.render(client.drift(), result.report)
    )


def archive_monitoring(cfg: AppConfig) -> None:
    """Move an earlier demo run's traffic log and retrain state aside (kept, not deleted), so
    this run's windows and its one incident start fresh."""
    moved = [p for p in (cfg.storage.traffic, cfg.storage.monitoring) if p.exists()]
    if moved:
        archive = cfg.storage.archive / time.strftime("%Y%m%dT%H%M%S")
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


def stop_demo() -> None:
    """Stop the demo's service and the local cluster it started (nothing to do if none)."""
    import ray

    if ray.is_initialized():
        from app.serving import app as serving_app

        with suppress(Exception):  # the service may never have started
            serving_app.stop()
        ray.shutdown()
