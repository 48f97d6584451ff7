"""Retention of rejected versions, on a real MLflow registry (sqlite under the test's storage)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

from app.data.synthetic import Defects, generate
from app.registry import ledger
from app.registry.registry import CHALLENGER, CHAMPION, REJECTED, Registry
from tests.configs import make_config
from tests.helpers import quick_bundle

CLEAN = Defects(0, 0, 0, 0, 0, 0)


def artifacts_of(registry: Registry, version: int) -> Path:
    run_id = registry.client.get_model_version(registry.name, str(version)).run_id
    return Path(urlparse(registry.client.get_run(run_id).info.artifact_uri).path)


def test_the_oldest_rejected_versions_go_with_their_artifacts_and_the_served_ones_stay(tmp_path, caplog):
    cfg = make_config(tmp_path, registry={"keep_rejected": 2})
    registry = Registry(cfg)
    bundle = quick_bundle(cfg, generate(1500, seed=1, defects=CLEAN), seed=1)
    champion = registry.register(bundle, params={}, alias=CHAMPION)
    # A challenger the rollout rolled back served traffic: its ledger is evidence, kept.
    rolled_back = registry.register(bundle, params={}, alias=CHALLENGER)
    registry.set_alias(REJECTED, rolled_back, by=ledger.CONTROLLER, reason="errors")
    challenger = registry.register(bundle, params={}, alias=CHALLENGER)
    refused, files = [], []
    with caplog.at_level(logging.INFO, logger="app.registry.retention"):
        for _ in range(5):  # online updates the gate refused
            refused.append(registry.register(bundle, params={}, alias=REJECTED, by=ledger.ONLINE))
            files.append(artifacts_of(registry, refused[-1]))
            registry.load(refused[-1])  # downloaded for a look: the local copy goes too
    gone_files = files[:3]
    assert all(path.exists() for path in files[3:])
    left = {v.version for v in registry.versions()}
    assert left == {champion, rolled_back, challenger, *refused[3:]}, "the newest two refused stay"
    assert registry.alias_version(CHAMPION) == champion and registry.alias_version(CHALLENGER) == challenger
    assert registry.alias_version(REJECTED) == refused[-1]
    assert all(not path.exists() for path in gone_files), "their artifacts are deleted"
    assert artifacts_of(registry, refused[-1]).exists() and artifacts_of(registry, champion).exists()
    assert not any((cfg.storage.bundles / f"v{v}").exists() for v in refused[:3])
    deletions = [r.getMessage() for r in caplog.records if "deleted rejected version" in r.getMessage()]
    assert len(deletions) == 3, deletions
    assert registry.load(CHAMPION).family == bundle.family  # the champion still loads


def test_keeping_none_deletes_every_refusal_but_never_a_version_with_another_alias(tmp_path):
    cfg = make_config(tmp_path, registry={"keep_rejected": 0})
    registry = Registry(cfg)
    bundle = quick_bundle(cfg, generate(1500, seed=1, defects=CLEAN), seed=1)
    champion = registry.register(bundle, params={}, alias=CHAMPION)
    registry.register(bundle, params={}, alias=REJECTED, by=ledger.ONLINE)
    assert [v.version for v in registry.versions()] == [champion]
    assert registry.alias_version(REJECTED) is None
