"""The monitor's reloaded sections: kept in the state store, read back by a restarted monitor."""

from __future__ import annotations

import logging

from app.data.state import state_store
from app.monitoring import overrides
from tests.configs import make_config


def test_a_monitor_restarted_elsewhere_keeps_the_reloaded_sections(state_storage, tmp_path):
    """Saved on one node, loaded on another with its own root: on S3 the other node sees the
    reload; on a local root (one machine) the same root does."""
    here = make_config(tmp_path / "here", storage=state_storage)
    changed = {**here.monitor.model_dump(), "psi_alert": 0.31}
    reloaded, result = overrides.apply(here, changed, here.retrain)
    assert result.changed == {"monitor.psi_alert": 0.31}
    overrides.save(reloaded)
    elsewhere = make_config(tmp_path / "elsewhere", storage=state_storage) if state_storage else here
    assert overrides.load(elsewhere).monitor.psi_alert == 0.31
    assert overrides.load(make_config(tmp_path / "fresh")).monitor.psi_alert == here.monitor.psi_alert


def test_unreadable_saved_sections_leave_the_deployed_config(tmp_path, caplog):
    cfg = make_config(tmp_path)
    state_store(cfg.storage).write(
        cfg.storage.monitor_overrides, b'{"monitor": {"psi_alert": -1}}', replaces=None
    )
    with caplog.at_level(logging.WARNING):
        assert overrides.load(cfg) == cfg
    assert any("monitor-config.json" in r.getMessage() for r in caplog.records)


def test_saved_sections_that_cannot_be_read_leave_the_deployed_config(tmp_path, caplog):
    cfg = make_config(tmp_path)
    cfg.storage.path(cfg.storage.monitor_overrides).mkdir(parents=True)  # a folder, not a file
    with caplog.at_level(logging.WARNING):
        assert overrides.load(cfg) == cfg
    assert any("unreadable" in r.getMessage() for r in caplog.records)
