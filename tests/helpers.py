"""Test helpers shared by unit and integration tests."""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import requests
import torch

from app.data.etl import run_etl
from app.data.synthetic import Defects, generate, write_dataset
from app.features.store import FeatureClient
from app.features.transforms import add_features, feature_spec
from app.model.bundle import ModelBundle
from app.model.net import ModelSpec, TabularMLP
from app.model.preprocess import Preprocessor
from app.model.profile import numeric_profile, reference_profile
from app.model.trees import TreeSpec
from app.training.loop import array_batches, train_epoch


def quick_bundle(cfg, frame, *, seed: int) -> ModelBundle:
    """A small model trained for one epoch in-process (the serving tests need two versions fast)."""
    spec = feature_spec(cfg)
    frame = add_features(frame, cfg)
    pre = Preprocessor(list(spec.numeric), [*spec.time, *spec.categorical]).fit(frame)
    torch.manual_seed(seed)
    model_spec = ModelSpec(n_numeric=pre.n_numeric, cardinalities=tuple(pre.cardinalities), width=16, depth=1)
    net = TabularMLP(model_spec)
    arrays = {**pre.transform_batch(frame), "label": frame[cfg.dataset.label].to_numpy(dtype="float32")}
    train_epoch(
        net, array_batches(arrays, 256, rng=np.random.default_rng(seed)), torch.optim.Adam(net.parameters())
    )
    return ModelBundle(
        spec=model_spec,
        state_dict=net.state_dict(),
        preprocessor=pre,
        features=spec.names,
        feature_service=FeatureClient(cfg).service_name,
        profile={
            **reference_profile(frame, pre.numeric, pre.categorical),
            "score": numeric_profile(pd.Series(np.linspace(0.05, 0.95, 200))),
        },
        metrics={"holdout": {"auc": 0.5}},
    )


def quick_tree_bundle(cfg, frame, *, seed: int, rounds: int = 5) -> ModelBundle:
    """A small gradient-boosted tree bundle trained in-process (no Ray), like `quick_bundle`."""
    from app.model.trees import booster_bytes
    from app.training.gbdt import arrays_dmatrix, boost, tree_spec

    mlp = quick_bundle(cfg, frame, seed=seed)  # the same preprocessor, features and profile
    spec = TreeSpec.for_preprocessor(mlp.preprocessor)
    data = arrays_dmatrix(
        {**mlp.preprocessor.transform_batch(add_features(frame, cfg)), "label": frame[cfg.dataset.label]},
        spec,
    )
    hp = {"learning_rate": 0.1, "max_depth": 3, "reg_lambda": 1.0, "min_child_weight": 1.0, "seed": seed}
    booster = boost({**hp, "rounds": rounds, "early_stopping_rounds": rounds}, data, data).booster
    return replace(
        mlp, spec=tree_spec(mlp.preprocessor, hp, booster), state_dict=None, booster=booster_bytes(booster)
    )


def prediction_record(
    request_id: str,
    *,
    features: dict | None = None,
    at=None,
    experiment: str = "e",
    variant: str = "champion",
    pred_score: float = 0.5,
    pred_label: int = 1,
    status: str = "ok",
) -> dict:
    """A traffic-log record as the ingress ships it (features: the model's inputs)."""
    from datetime import datetime, timezone

    return {
        **(features or {}),
        "request_id": request_id,
        "logged_at": at or datetime.now(timezone.utc),
        "experiment": experiment,
        "variant": variant,
        "model_version": 1,
        "shadow": False,
        "pred_score": pred_score,
        "pred_label": pred_label,
        "latency_ms": 1.0,
        "status": status,
        "key": request_id,
    }


def model_inputs(cfg, n: int, *, seed: int, drift: float = 0.0, concept: float = 0.0) -> pd.DataFrame:
    """Defect-free built-in rows with every model input derived, plus the label."""
    from app.data.synthetic import Defects, generate

    raw = generate(n, seed=seed, drift=drift, concept=concept, defects=Defects(0, 0, 0, 0, 0, 0)).head(n)
    return add_features(raw, cfg)[[*feature_spec(cfg).names, cfg.dataset.label]]


def small_cli_env() -> dict:
    """Environment for an `mlsys` subprocess in a test: its own small local cluster, short training."""
    return {
        **os.environ,
        "MLSYS_RAY__NUM_CPUS": "4",
        "MLSYS_RAY__INCLUDE_DASHBOARD": "false",
        "MLSYS_MLP__EPOCHS": "3",
        "MLSYS_SERVE__GRPC_PORT": "0",  # 9000 may be a live service's
        "RAY_ADDRESS": "",
    }


@contextmanager
def ab_service(cfg, tmp, *, token: str) -> Iterator[dict]:
    """Champion and challenger registered and served over real HTTP (admin token set), then torn down."""
    from ray import serve

    from app.registry.registry import CHALLENGER, CHAMPION, Registry
    from app.serving import app as serving_app

    entities, clean = served_entities(cfg, tmp)
    registry = Registry(cfg)
    registry.register(quick_bundle(cfg, clean, seed=1), params={}, alias=CHAMPION)
    registry.register(quick_bundle(cfg, clean, seed=2), params={}, alias=CHALLENGER)
    env = pytest.MonkeyPatch()
    env.setenv(serving_app.TOKEN_ENV, token)
    try:
        outcomes = {"Authorization": f"Bearer {producer_token(cfg)}"}  # an outcome producer's header
        url = serving_app.start(cfg)
        yield {"url": url, "cfg": cfg, "entities": entities, "registry": registry, "outcomes": outcomes}
    finally:
        env.undo()
        serve.shutdown()


def served_entities(cfg, tmp) -> tuple[list[int], pd.DataFrame]:
    """Raw data through ETL into a materialized online store, for a serving test.

    Returns 50 entity ids the store knows and a clean frame to train the served models on."""
    raw = generate(4000, seed=5)
    write_dataset(iter([raw]), tmp / "raw.parquet")
    run_etl(cfg, str(tmp / "raw.parquet"))
    features = FeatureClient(cfg)
    features.apply()
    features.materialize()
    clean = generate(2000, seed=6, defects=Defects(0, 0, 0, 0, 0, 0))
    return [int(e) for e in raw["user_id"].dropna().unique()[:50]], clean


ADMIN_TOKEN = "unit-admin-token"


def producer_token(cfg, name: str = "tests") -> str:
    """A token of the outcome producer `name` (added on first use) for /feedback calls."""
    from app.serving.producers import producer_store

    return producer_store(cfg).token_for(name)


def free_port() -> int:
    """A TCP port nobody listens on now (the OS's pick), for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_ingress(cfg, *, monitor=None, features=None, handles=None):
    """A serving replica's `Ingress` over in-process doubles of its actors and online store (the
    registry and the control actor's class are real); admin routes take ADMIN_TOKEN."""
    from app.serving.auth import token_digest
    from app.serving.control import ServeControl
    from app.serving.ingress import Ingress
    from tests.doubles import ActorDouble, MonitorDouble, OnlineStoreDouble

    return Ingress(
        cfg.model_dump(mode="json"),
        handles or {},
        token_digest(ADMIN_TOKEN),
        control=ActorDouble(ServeControl(cfg)),
        monitor=ActorDouble(monitor or MonitorDouble()),
        features=features or OnlineStoreDouble(cfg),
    )


class PredictLoad:
    """`callers` threads predicting in a loop, counting answers and failures (no retries)."""

    def __init__(self, url: str, entities: list[int], callers: int):
        self.url, self.entities, self.callers = url, entities, callers
        self.stop = threading.Event()
        self.counts: Counter = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def _call(self, i: int) -> None:
        session = requests.Session()
        entity = self.entities[i % len(self.entities)]
        while not self.stop.is_set():
            try:
                resp = session.post(f"{self.url}/predict", json={"entity_id": entity}, timeout=60)
                ok = resp.status_code == 200
                reason = f"{resp.status_code} {resp.text[:200]}"
            except requests.RequestException as exc:
                ok, reason = False, str(exc)[:200]
            with self.lock:  # `+=` on a Counter is not atomic across threads
                self.counts["ok" if ok else "failed"] += 1
                if not ok:
                    self.failures.append(reason)

    def __enter__(self):
        self.pool = ThreadPoolExecutor(self.callers)
        for i in range(self.callers):
            self.pool.submit(self._call, i)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.pool.shutdown(wait=True)
