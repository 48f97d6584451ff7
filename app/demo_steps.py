"""The demo's steps that are not the loop itself: its traffic (well-formed rows of the built-in
data, replayed with their outcomes), the injected worse model, moving an earlier run aside, and
waiting for what the service does on its own (an alert, a retrain job, the job's end)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app import progress
from app.config import AppConfig
from app.data.synthetic import Defects, generate
from app.monitoring import production
from app.pipeline import console
from app.registry.registry import CHALLENGER, Registry

if TYPE_CHECKING:
    from app.monitoring.messages import DriftReport

CLEAN = Defects(0, 0, 0, 0, 0, 0)  # the demo's traffic: well-formed rows


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
    fresh. Only what is under the root moves: with `storage.state` on an object store, the
    traffic log, its snapshot and the shared state stay there, and this run carries on from them."""
    st = cfg.storage
    registry = (st.mlflow_db, st.mlartifacts, st.bundles)  # the local registry (not a tracking server)
    kept = (*registry, st.path("serving"), st.production, st.path(st.traffic), st.monitoring)
    moved = [p for p in kept if p.exists()]
    production.forget(cfg)  # out of the catalog, its files archived with the rest
    if moved:
        archive = st.archive / time.strftime("%Y%m%dT%H%M%S")
        archive.mkdir(parents=True)
        for p in moved:
            p.rename(archive / p.name)


def decayed(client) -> DriftReport | None:
    from app.monitoring.messages import DriftReport

    report = DriftReport.model_validate(client.drift())
    return report if report.performance_alert else None


def submitted_job(client) -> dict | None:
    submitted = client.drift()["retrain"]["submitted"]
    return submitted[-1] if submitted else None


def wait_for(probe: Callable[[], Any], what: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")


def wait_job(cfg: AppConfig, job_id: str, timeout_s: float = 900) -> str:
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
