"""The project's config for tests: the local config file, and a copy pointed at a temporary
storage root with a small local Ray."""

from __future__ import annotations

from pathlib import Path

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
    # gRPC off unless a test asks for it on a port of its own (9000 may be a live service's).
    data.setdefault("serve", {})["grpc_port"] = 0
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return parse_config(data, environ={})
