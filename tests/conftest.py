"""Shared fixtures: the project's config, and a copy of it pointed at a temporary storage root."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.config import AppConfig, parse_config

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CONFIG = ROOT / "deployments" / "config" / "local.yaml"


def config_dict() -> dict:
    return yaml.safe_load(LOCAL_CONFIG.read_text())


def make_config(tmp_path: Path, **sections) -> AppConfig:
    """The local config with storage under tmp_path, a small local Ray, and section overrides."""
    data = config_dict()
    data["storage"] = {"root": str(tmp_path / "store")}
    data["ray"] = {"num_cpus": 4, "include_dashboard": False}
    # Tests set splits and promote by hand; those of the automatic rollout turn it on.
    data["rollout"] = {"mode": "manual"}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return parse_config(data, environ={})


@pytest.fixture
def cfg(tmp_path) -> AppConfig:
    return make_config(tmp_path)
