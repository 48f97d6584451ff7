"""The monitor's reloaded settings: new `monitor` and `retrain` sections applied over the
config the actor was created with, saved so that a restarted monitor keeps them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from app.config import AppConfig, MonitorConfig, RetrainConfig
from app.files import atomic_write_text
from app.monitoring.messages import ReloadResult

log = logging.getLogger(__name__)
SECTIONS = ("monitor", "retrain")


def apply(
    cfg: AppConfig, monitor: MonitorConfig | Mapping, retrain: RetrainConfig | Mapping
) -> tuple[AppConfig, ReloadResult]:
    """The config with these sections (validated), and what changed in them."""
    new = cfg.model_copy(
        update={
            "monitor": MonitorConfig.model_validate(monitor),
            "retrain": RetrainConfig.model_validate(retrain),
        }
    )
    changed = {
        f"{section}.{k}": v
        for section in SECTIONS
        for k, v in getattr(new, section).model_dump().items()
        if getattr(cfg, section).model_dump()[k] != v
    }
    return new, ReloadResult(changed=changed)


def save(cfg: AppConfig) -> None:
    sections = {section: getattr(cfg, section).model_dump() for section in SECTIONS}
    atomic_write_text(cfg.storage.monitor_overrides, json.dumps(sections))


def load(cfg: AppConfig) -> AppConfig:
    """The sections a reload saved, over `cfg` (`cfg` itself when none were saved, or when the
    saved file is unreadable: one warning)."""
    path = cfg.storage.monitor_overrides
    if not path.exists():
        return cfg
    try:
        saved = json.loads(path.read_text())
        return apply(cfg, saved["monitor"], saved["retrain"])[0]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # pydantic's errors are ValueErrors
        log.warning("reloaded monitor config %s is unreadable (%s): using the deployed one", path, exc)
        return cfg
