import logging

import pytest

from app.training.train import console_log_level, mlp_hyperparameters, run_config
from tests.configs import make_config


@pytest.fixture
def root_level():
    root = logging.getLogger()
    before = root.level
    yield root.setLevel
    root.setLevel(before)


def test_ray_train_info_lines_stay_off_the_console_unless_verbose(cfg, root_level):
    root_level(logging.WARNING)  # the CLI without --verbose
    assert console_log_level() == run_config(cfg, "r").logging_config.log_level == "WARNING"
    root_level(logging.INFO)  # --verbose
    assert console_log_level() == run_config(cfg, "r").logging_config.log_level == "INFO"


def test_runs_checkpoint_under_the_storage_root_and_survive_failures(cfg):
    rc = run_config(cfg, "train-x")
    assert rc.name == "train-x" and rc.storage_path == str(cfg.storage.path(cfg.storage.checkpoints))
    assert rc.failure_config.max_failures == cfg.model.max_failures
    assert rc.checkpoint_config.num_to_keep == 2


def test_an_mlp_runs_settings_come_from_the_mlp_section(tmp_path):
    from app.training.tune import TORCH_SPACE

    cfg = make_config(tmp_path, mlp={"lr": 0.01, "width": 32, "epochs": 4})
    hp = mlp_hyperparameters(cfg)
    assert (hp["lr"], hp["width"], hp["epochs"]) == (0.01, 32, 4)
    assert set(TORCH_SPACE) <= set(hp)  # a search overrides only what a run has
