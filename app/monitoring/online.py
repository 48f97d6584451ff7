"""Online learning: incremental updates of the champion from feedback-labelled traffic.

One step (`mlsys online`, or `--every N` seconds): the predictions that received feedback
since the last step (the traffic log joined to its feedback) fine-tune a copy of the champion
for a few passes (`partial_fit`-style: same preprocessor and vocabulary, a small learning
rate); a tree champion gets a few more boosting rounds fitted to the new rows instead
(XGBoost's training continuation, `training.gbdt.continue_boosting`). The newest fifth of
those rows is held out: an update that does not beat its parent there (log loss) is dropped.
One that does faces the registry gate on the warehouse's holdout, like any trained candidate:
passed, it becomes the challenger, and the rollout controller decides on live outcomes;
failed, it is registered as `rejected` with the gate's reason in the promotion ledger.
Feedback alone never makes a champion, so a client that posts chosen labels can at most
propose a model. Only the log's hours since the last step are read; the last step's time
is kept in the state store, and an unreadable one is treated as absent, with one warning.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from app.config import AppConfig
from app.data import state
from app.model.bundle import ModelBundle
from app.model.predictor import Predictor
from app.model.trees import FAMILY as TREE_FAMILY
from app.monitoring.traffic import labelled_traffic, traffic_log
from app.registry import ledger
from app.registry.registry import CHALLENGER, CHAMPION, REJECTED, Registry
from app.training.dataset import build_splits
from app.training.evaluate import binary_metrics, passes_gate
from app.training.gbdt import continue_boosting
from app.training.loop import array_batches, train_epoch

log = logging.getLogger(__name__)
HOLDOUT_SHARE = 0.2


@dataclass
class OnlineStep:
    rows: int
    published: int | None  # the new version, or None
    reason: str
    parent: int | None = None
    parent_log_loss: float | None = None
    updated_log_loss: float | None = None


def partial_fit(
    bundle: ModelBundle, frame: pd.DataFrame, labels: np.ndarray, *, lr: float, epochs: int, seed: int = 0
) -> ModelBundle:
    """A copy of the bundle trained a little more on (frame, labels): a few passes for a
    network, `epochs` x 5 more trees for a tree model."""
    if bundle.family == TREE_FAMILY:
        return continue_boosting(bundle, frame, labels, rounds=5 * epochs, seed=seed)
    torch.manual_seed(seed)
    net = bundle.model().train()
    arrays = {**bundle.preprocessor.transform_batch(frame), "label": labels.astype("float32")}
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        train_epoch(net, array_batches(arrays, 256, rng=rng), optimizer)
    updated = copy.copy(bundle)
    updated.state_dict = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return updated


def log_loss(bundle: ModelBundle, frame: pd.DataFrame, labels: np.ndarray) -> float:
    return float(binary_metrics(labels, Predictor.from_bundle(bundle).predict_proba(frame))["log_loss"])


def last_step(store: state.StateStore, key: str) -> str | None:
    """The newest prediction time the last step used, or None (no step yet, or unreadable)."""
    try:
        stored = store.read(key)
        if stored is None:
            return None
        until = json.loads(stored.data)["until"]
        if not isinstance(until, str) or pd.isna(pd.Timestamp(until)):
            raise ValueError(f"'until' is not a time: {until!r}")
        return until
    except (OSError, ValueError, KeyError, TypeError) as exc:
        where = state.where(store, key)
        log.warning("online state %s is unreadable (%s): reading all labelled traffic", where, exc)
        return None


def publish(
    cfg: AppConfig,
    registry: Registry,
    parent: ModelBundle,
    updated: ModelBundle,
    holdout: pd.DataFrame | None,
    lr: float,
    epochs: int,
) -> tuple[int | None, str]:
    """The registry gate on the warehouse's holdout, as for any trained candidate: the update
    becomes the challenger (the rollout decides the rest), or is registered as `rejected` with
    the gate's reason in the ledger. Feedback alone can never make a champion."""
    if holdout is None:
        holdout = build_splits(cfg).holdout
    label = cfg.dataset.label
    y = holdout[label].to_numpy(int)
    candidate = binary_metrics(y, Predictor.from_bundle(updated).predict_proba(holdout))
    champion = binary_metrics(y, Predictor.from_bundle(parent).predict_proba(holdout))
    passed, gate = passes_gate(
        candidate, champion, metric=cfg.registry.gate_metric, margin=cfg.registry.gate_margin
    )
    updated.metrics = {**updated.metrics, "holdout": candidate, "gate": {"passed": passed, "reason": gate}}
    alias = CHALLENGER if passed else REJECTED
    reason = f"online update {'passed' if passed else 'failed'} the gate on the warehouse holdout: {gate}"
    version = registry.register(
        updated,
        params={"online_lr": lr, "online_epochs": epochs},
        alias=alias,
        by=ledger.ONLINE,
        reason=reason,
    )
    return (version if passed else None), f"version {version} registered as {alias}: {reason}"


def online_step(
    cfg: AppConfig,
    *,
    min_rows: int = 200,
    lr: float = 1e-4,
    epochs: int = 2,
    warehouse_holdout: pd.DataFrame | None = None,
) -> OnlineStep:
    """Fine-tune the champion on new labelled traffic; an improvement that passes the gate on
    the warehouse holdout (read from the feature store unless given) becomes the challenger."""
    store = state.state_store(cfg.storage)
    since = last_step(store, cfg.storage.online_state)
    rows = labelled_traffic(traffic_log(cfg.storage), since=since)
    if not rows.empty:
        rows = rows.sort_values("logged_at")
    if len(rows) < min_rows:
        return OnlineStep(
            rows=len(rows), published=None, reason=f"{len(rows)} new labelled rows, need {min_rows}"
        )
    registry = Registry(cfg)
    parent_version = registry.alias_version(CHAMPION)
    if parent_version is None:
        return OnlineStep(rows=len(rows), published=None, reason="no champion to update")
    rolling_out = registry.alias_version(CHALLENGER)
    if rolling_out is not None:  # a new challenger would restart its rollout: the rows wait
        return OnlineStep(
            rows=len(rows), published=None, reason=f"challenger v{rolling_out} is still being rolled out"
        )
    parent = registry.load(parent_version)
    cut = int(len(rows) * (1 - HOLDOUT_SHARE))
    train, holdout = rows.iloc[:cut], rows.iloc[cut:]
    y_train, y_hold = train["label"].to_numpy(int), holdout["label"].to_numpy(int)
    updated = partial_fit(parent, train, y_train, lr=lr, epochs=epochs)
    before, after = log_loss(parent, holdout, y_hold), log_loss(updated, holdout, y_hold)
    step = OnlineStep(
        rows=len(rows),
        published=None,
        reason="",
        parent=parent_version,
        parent_log_loss=before,
        updated_log_loss=after,
    )
    if after >= before:
        step.reason = (
            f"not published: log loss {after:.4f} >= parent's {before:.4f} on the newest {len(holdout)} rows"
        )
    else:
        updated.metrics = {
            **parent.metrics,
            "online": {"holdout_log_loss": after, "parent_log_loss": before, "rows": len(rows)},
        }
        updated.lineage = {
            **parent.lineage,
            "parent_version": str(parent_version),
            "online_rows": str(len(rows)),
        }
        step.published, step.reason = publish(cfg, registry, parent, updated, warehouse_holdout, lr, epochs)
    state.put_json(store, cfg.storage.online_state, {"until": str(rows["logged_at"].max())})
    log.info("online step: %s", step.reason)
    return step
