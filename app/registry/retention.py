"""Retention of rejected versions: a gate's refusals are kept for review, the newest few only.

Online learning registers every update the gate refuses as `rejected`, one a failed update,
so they would pile up for ever. A version that never served (every ledger entry of it is a
rejection) and holds no alias but `rejected` is deleted once `registry.keep_rejected` newer
ones exist, with its run and artifacts, through MLflow's API. A version that served (a
challenger the rollout rolled back, a former champion) keeps its ledger: it is never deleted.
"""

from __future__ import annotations

import logging
import shutil

from app.registry import ledger

log = logging.getLogger(__name__)


def never_served(tags: dict[str, str]) -> bool:
    """Whether a version's ledger holds rejections only (it was refused when registered)."""
    entries = ledger.parse(tags)
    return bool(entries) and all(e.event == ledger.REJECT for e in entries)


def prune_rejected(registry, *, keep: int, rejected_alias: str) -> list[int]:
    """Delete the rejected versions beyond the newest `keep`; returns the versions deleted."""
    client, name = registry.client, registry.name
    aliases = client.get_registered_model(name).aliases  # alias -> version
    held = {int(v) for a, v in aliases.items() if a != rejected_alias}
    found = client.search_model_versions(f"name='{name}'")
    rejected = sorted(
        (mv for mv in found if int(mv.version) not in held and never_served(mv.tags)),
        key=lambda mv: int(mv.version),
    )
    stale = rejected[: max(len(rejected) - keep, 0)]
    deleted = []
    for mv in stale:
        others = [m for m in found if m.run_id == mv.run_id and m.version != mv.version]
        _delete(registry, mv, keep_run=bool(others))
        deleted.append(int(mv.version))
        log.info(
            "deleted rejected version %s of %s with its artifacts (registry.keep_rejected=%d newer kept)",
            mv.version,
            name,
            keep,
        )
    return deleted


def _delete(registry, mv, *, keep_run: bool) -> None:
    """The version, then (unless another version shares its run) the run's artifacts and the
    run, then the bundle downloaded for serving it."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = registry.client
    client.delete_model_version(registry.name, mv.version)
    if not keep_run:
        artifact_uri = client.get_run(mv.run_id).info.artifact_uri
        get_artifact_repository(artifact_uri).delete_artifacts()
        client.delete_run(mv.run_id)
    shutil.rmtree(registry.cfg.storage.bundles / f"v{mv.version}", ignore_errors=True)
