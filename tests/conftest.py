"""Shared fixtures: the project's config pointed at a temporary storage root (tests/configs.py)."""

from __future__ import annotations

import pytest

from app.config import AppConfig
from tests.configs import make_config


@pytest.fixture
def cfg(tmp_path) -> AppConfig:
    return make_config(tmp_path)
