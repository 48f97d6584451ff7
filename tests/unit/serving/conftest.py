"""Fixtures of the unit tests: a serving replica over two registered models."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.config import AppConfig
from app.data.synthetic import Defects, generate
from app.model.bundle import ModelBundle
from app.registry.registry import CHALLENGER, CHAMPION, Registry
from app.serving.ingress import Ingress
from tests.configs import make_config
from tests.doubles import MonitorDouble
from tests.helpers import make_ingress, quick_bundle


@dataclass
class Replica:
    """A replica (`Ingress`, no Ray, no HTTP) serving a champion and a challenger at 50/50."""

    cfg: AppConfig
    ingress: Ingress
    bundles: dict[str, ModelBundle]
    monitor: MonitorDouble
    registry: Registry


@pytest.fixture
def replica(tmp_path) -> Replica:
    cfg = make_config(
        tmp_path,
        serve={"experiment": {"name": "exp-unit", "split": {"champion": 0.5, "challenger": 0.5}}},
    )
    registry = Registry(cfg)
    clean = Defects(0, 0, 0, 0, 0, 0)
    bundles = {
        alias: quick_bundle(cfg, generate(1500, seed=seed, defects=clean), seed=seed)
        for alias, seed in ((CHAMPION, 1), (CHALLENGER, 2))
    }
    for alias, bundle in bundles.items():
        registry.register(bundle, params={}, alias=alias)
    monitor = MonitorDouble()
    return Replica(cfg, make_ingress(cfg, monitor=monitor), bundles, monitor, registry)
