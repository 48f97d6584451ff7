"""ServeControl's persisted settings: a truncated or garbled state file starts from the config."""

from __future__ import annotations

import json

import pytest

from app.serving.control import ServeControl, load_saved
from tests.configs import make_config


def test_settings_survive_a_restart(cfg):
    control = ServeControl(cfg)
    control.set_experiment(
        cfg.serve.experiment.model_copy(update={"split": {"champion": 0.5, "challenger": 0.5}})
    )
    again = ServeControl(cfg)
    assert again.generation == 1 and again.experiment.split == {"champion": 0.5, "challenger": 0.5}


@pytest.mark.parametrize(
    "content",
    [
        lambda good: good[: len(good) // 2],  # truncated
        lambda good: "[1, 2]",  # JSON, not a state
        lambda good: json.dumps({**json.loads(good), "experiment": {"split": "half"}}),  # invalid settings
    ],
)
def test_an_unreadable_state_file_is_treated_as_absent(cfg, caplog, content):
    control = ServeControl(cfg)
    control.set_experiment(
        cfg.serve.experiment.model_copy(update={"split": {"champion": 0.5, "challenger": 0.5}})
    )
    path = cfg.storage.path(cfg.storage.experiment_state)
    path.write_text(content(path.read_text()))
    assert load_saved(path.read_bytes(), str(path)) is None
    restarted = ServeControl(cfg)  # no crash: the config's settings
    assert restarted.experiment == cfg.serve.experiment
    assert restarted.generation > control.generation  # every replica reloads
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    restarted.bump()
    assert ServeControl(cfg).generation == restarted.generation  # and it is written whole again


def test_two_controllers_never_overwrite_each_other_unseen(state_storage, tmp_path):
    """A controller that missed another's change (two clusters on one state, an actor restarted
    while the old one ran) applies its own on top of it: the generation moves past both, and a
    promotion's bump keeps the other's split instead of writing back its stale one."""
    cfg = make_config(tmp_path, storage=state_storage)
    first, second = ServeControl(cfg), ServeControl(cfg)
    half = cfg.serve.experiment.model_copy(update={"split": {"champion": 0.5, "challenger": 0.5}})
    first.set_experiment(half)
    second.bump()  # second still holds the config's split
    stored = ServeControl(cfg)
    assert stored.experiment.split == half.split
    assert stored.generation == 2 and second.generation == 2
    tenth = cfg.serve.experiment.model_copy(update={"split": {"champion": 0.9, "challenger": 0.1}})
    first.set_experiment(tenth)  # first missed second's bump
    assert ServeControl(cfg).generation == 3 and ServeControl(cfg).experiment.split == tenth.split
