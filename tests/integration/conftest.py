"""One local Ray session for all integration tests (ray.init costs seconds; share it)."""

from __future__ import annotations

import os

import pytest
import ray

from app.cluster.connection import SERVE_PROXY_ENV, WORKER_ENV


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    if not ray.is_initialized():
        os.environ.update(SERVE_PROXY_ENV["haproxy"])  # the documented default proxy
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            logging_level="WARNING",
            runtime_env={"env_vars": {**WORKER_ENV, **SERVE_PROXY_ENV["haproxy"]}},  # as `connect` starts one
        )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()
