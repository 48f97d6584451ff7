"""Connect to the Ray cluster: the one at `ray.address` / RAY_ADDRESS, or a local one.

Every command goes through `connect`, so the same command works on a laptop and against a
running cluster.
"""

from __future__ import annotations

import logging
import os

import ray

from app.config import RayConfig

log = logging.getLogger(__name__)


def connect(cfg: RayConfig) -> str | None:
    """Join the configured cluster, or start a local one sized by logical CPUs.

    Returns the dashboard URL when this call started or joined a cluster.
    """
    if ray.is_initialized():
        return None
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to Ray at %s", address)
        ctx = ray.init(address=address, log_to_driver=True)
    else:
        ctx = ray.init(
            num_cpus=cfg.num_cpus,
            include_dashboard=cfg.include_dashboard,
            dashboard_host=cfg.dashboard_host,
            dashboard_port=cfg.dashboard_port,
            logging_level=logging.WARNING,
        )
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url else None
