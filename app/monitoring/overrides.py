"""The monitor's reloaded settings: new `monitor` and `retrain` sections applied over the
config the actor was created with, saved in the state store so that a monitor restarted
on any node keeps them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from app.config import AppConfig, MonitorConfig, RetrainConfig
from app.data import state
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
    state.put_json(state.state_store(cfg.storage), cfg.storage.monitor_overrides, sections)


def load(cfg: AppConfig) -> AppConfig:
    """The sections a reload saved, over `cfg` (`cfg` itself when none were saved, or when the
    saved ones are unreadable: one warning)."""
    store = state.state_store(cfg.storage)
    try:
        saved = store.read(cfg.storage.monitor_overrides)
        if saved is None:
            return cfg
        sections = json.loads(saved.data)
        return apply(cfg, sections["monitor"], sections["retrain"])[0]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # pydantic's errors are ValueErrors
        where = state.where(store, cfg.storage.monitor_overrides)
        log.warning("reloaded monitor config %s is unreadable (%s): using the deployed one", where, exc)
        return cfg
