"""Online learning: an update from feedback is published only when it beats its parent."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from app.data.state import state_store
from app.data.synthetic import Defects, generate
from app.monitoring.online import last_step, online_step
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, write_records
from app.registry.registry import CHALLENGER, CHAMPION, REJECTED, Registry
from tests.helpers import model_inputs, prediction_record, quick_bundle, quick_tree_bundle

CLEAN = Defects(0, 0, 0, 0, 0, 0)


@pytest.fixture
def registry_with_champion(cfg):
    Registry(cfg).register(
        quick_bundle(cfg, generate(2000, seed=1, defects=CLEAN), seed=1), params={}, alias=CHAMPION
    )
    return cfg


@pytest.fixture
def registry_with_fair_champion(cfg):
    """A champion fitted on 30,000 rows. One fitted on 2,000 scores worse than a constant on
    some days' data (the generator's dates follow today's): noise then only moves it to 0.5."""
    Registry(cfg).register(
        quick_bundle(cfg, generate(30_000, seed=1, defects=CLEAN), seed=1), params={}, alias=CHAMPION
    )
    return cfg


def warehouse(cfg):
    """A clean sample of the data, standing in for the warehouse's holdout split."""
    return model_inputs(cfg, 1500, seed=99)


def log_traffic(cfg, frame, labels):
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    times = [start + timedelta(seconds=i) for i in range(len(frame))]
    preds = [
        prediction_record(f"r{i}", features=row, at=times[i])
        for i, row in enumerate(frame.to_dict("records"))
    ]
    feedback = [{"request_id": f"r{i}", "label": int(y), "logged_at": times[i]} for i, y in enumerate(labels)]
    root = cfg.storage.path("traffic")
    write_records(root, PREDICTIONS, preds)
    write_records(root, FEEDBACK, feedback)


def features(cfg, n, seed):
    frame = model_inputs(cfg, n, seed=seed)
    return frame.drop(columns=[cfg.dataset.label]), frame[cfg.dataset.label].to_numpy(int)


def test_feedback_that_teaches_is_published_and_repeats_wait_for_new_rows(registry_with_champion):
    cfg = registry_with_champion
    frame, labels = features(cfg, 3000, seed=7)
    log_traffic(cfg, frame, labels)
    step = online_step(cfg, min_rows=200, lr=3e-3, epochs=3, warehouse_holdout=warehouse(cfg))
    assert step.published == 2 and step.updated_log_loss < step.parent_log_loss, step.reason
    registry = Registry(cfg)
    assert registry.alias_version(CHALLENGER) == 2 and registry.alias_version(CHAMPION) == 1
    entry = registry.promotion_ledger()[-1]
    assert (entry.event, entry.by, entry.version) == ("set challenger", "online learning", 2)
    assert "passed the gate" in entry.reason
    waiting = online_step(cfg, min_rows=0, warehouse_holdout=warehouse(cfg))
    assert waiting.published is None and "v2 is still being rolled out" in waiting.reason
    registry.promote(2)  # the rollout ended
    again = online_step(cfg, min_rows=200, warehouse_holdout=warehouse(cfg))
    assert again.published is None and again.rows == 0  # nothing new since the last step


def test_a_tree_champion_learns_online_with_more_boosting_rounds(cfg):
    Registry(cfg).register(
        quick_tree_bundle(cfg, generate(2000, seed=1, defects=CLEAN), seed=1, rounds=5),
        params={},
        alias=CHAMPION,
    )
    frame, labels = features(cfg, 3000, seed=7)
    log_traffic(cfg, frame, labels)
    step = online_step(cfg, min_rows=200, epochs=2, warehouse_holdout=warehouse(cfg))
    assert step.published == 2 and step.updated_log_loss < step.parent_log_loss, step.reason
    updated = Registry(cfg).load(CHALLENGER)
    assert updated.family == "gbdt" and updated.spec.rounds == 5 + 10


def test_feedback_that_harms_is_not_published(registry_with_fair_champion):
    cfg = registry_with_fair_champion
    frame, labels = features(cfg, 3000, seed=8)
    rng = np.random.default_rng(0)
    # Noise to learn from; the held-out newest fifth keeps its true outcomes.
    noisy = np.where(np.arange(len(labels)) < 2400, rng.integers(0, 2, len(labels)), labels)
    log_traffic(cfg, frame, noisy)
    step = online_step(cfg, min_rows=200, lr=5e-2, epochs=5)  # a large step on noise degrades it
    assert step.published is None and "not published" in step.reason
    assert Registry(cfg).alias_version(CHAMPION) == 1


def test_poisoned_feedback_fits_its_own_holdout_but_fails_the_gate_and_is_rejected(
    registry_with_fair_champion,
):
    """Labels flipped for one segment (every US user) pass the feedback's own holdout, which
    is poisoned too; the gate on the warehouse's holdout refuses the update."""
    cfg = registry_with_fair_champion
    frame, labels = features(cfg, 3000, seed=8)
    poisoned = np.where(frame["country"].to_numpy() == "US", 1 - labels, labels)
    log_traffic(cfg, frame, poisoned)
    step = online_step(cfg, min_rows=200, lr=1e-2, epochs=5, warehouse_holdout=warehouse(cfg))
    assert step.updated_log_loss < step.parent_log_loss, "it learned the poison"
    assert step.published is None and "failed the gate" in step.reason, step.reason
    registry = Registry(cfg)
    assert registry.alias_version(CHAMPION) == 1 and registry.alias_version(CHALLENGER) is None
    rejected = registry.alias_version(REJECTED)
    entry = registry.promotion_ledger()[-1]
    assert (entry.event, entry.by, entry.version) == ("reject", "online learning", rejected)
    assert "auc" in entry.reason and "beyond margin" in entry.reason


@pytest.mark.parametrize("text", ['{"until": "2026-01-0', '{"until": null}', '{"until": "yesterday"}', "[]"])
def test_an_unreadable_online_state_is_treated_as_absent(cfg, caplog, text):
    store, key = state_store(cfg.storage), cfg.storage.online_state
    store.write(key, text.encode(), replaces=None)
    assert last_step(store, key) is None
    assert any(key in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    step = online_step(cfg, min_rows=200)  # no crash: every labelled row counts as new (none here)
    assert step.published is None and step.rows == 0


def test_the_last_step_is_read_back(cfg):
    store, key = state_store(cfg.storage), cfg.storage.online_state
    store.write(key, json.dumps({"until": "2026-01-01 10:00:00+00:00"}).encode(), replaces=None)
    assert last_step(store, key) == "2026-01-01 10:00:00+00:00"
