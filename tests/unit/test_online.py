"""Online learning: an update from feedback is published only when it beats its parent."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from app.data.synthetic import Defects, generate
from app.features.transforms import add_features
from app.monitoring.online import online_step
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, write_records
from app.registry.registry import CHAMPION, Registry
from tests.helpers import quick_bundle

CLEAN = Defects(0, 0, 0, 0, 0, 0)


@pytest.fixture
def registry_with_champion(cfg):
    Registry(cfg).register(
        quick_bundle(cfg, generate(2000, seed=1, defects=CLEAN), seed=1), params={}, alias=CHAMPION
    )
    return cfg


def log_traffic(cfg, frame, labels):
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    preds, feedback = [], []
    for i, row in enumerate(frame.to_dict("records")):
        at = start + timedelta(seconds=i)
        rid = f"r{i}"
        preds.append(
            {
                **row,
                "request_id": rid,
                "logged_at": at,
                "experiment": "e",
                "variant": "champion",
                "model_version": 1,
                "shadow": False,
                "pred_score": 0.5,
                "pred_label": 1,
                "latency_ms": 1.0,
                "status": "ok",
                "key": rid,
            }
        )
        feedback.append({"request_id": rid, "label": int(labels[i]), "logged_at": at})
    root = cfg.storage.path("traffic")
    write_records(root, PREDICTIONS, preds)
    write_records(root, FEEDBACK, feedback)


def features(cfg, n, seed):
    raw = generate(n, seed=seed, defects=CLEAN).head(n)
    frame = add_features(raw, cfg)
    cols = [
        "age",
        "income",
        "score",
        "country",
        "gender",
        "hour",
        "day_of_week",
        "month",
        "age_bucket",
        "age_bucket_x_gender",
    ]
    return frame[cols], raw["label"].to_numpy(int)


def test_feedback_that_teaches_is_published_and_repeats_wait_for_new_rows(registry_with_champion):
    cfg = registry_with_champion
    frame, labels = features(cfg, 3000, seed=7)
    log_traffic(cfg, frame, labels)
    step = online_step(cfg, min_rows=200, lr=3e-3, epochs=3)
    assert step.published == 2 and step.updated_log_loss < step.parent_log_loss
    assert Registry(cfg).alias_version(CHAMPION) == 2
    again = online_step(cfg, min_rows=200)
    assert again.published is None and again.rows == 0  # nothing new since the last step


def test_feedback_that_harms_is_not_published(registry_with_champion):
    cfg = registry_with_champion
    frame, labels = features(cfg, 3000, seed=8)
    rng = np.random.default_rng(0)
    noisy = np.where(np.arange(len(labels)) < 2400, rng.integers(0, 2, len(labels)), labels)  # noise to learn
    noisy[2400:] = labels[2400:]  # the held-out newest rows keep their true outcomes
    log_traffic(cfg, frame, noisy)
    step = online_step(cfg, min_rows=200, lr=5e-2, epochs=5)  # a large step on noise degrades it
    assert step.published is None and "not published" in step.reason
    assert Registry(cfg).alias_version(CHAMPION) == 1
