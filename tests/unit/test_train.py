import logging

import pytest

from app.training.train import console_log_level, run_config


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
    assert rc.name == "train-x" and rc.storage_path == str(cfg.storage.checkpoints)
    assert rc.failure_config.max_failures == cfg.train.max_failures
    assert rc.checkpoint_config.num_to_keep == 2
