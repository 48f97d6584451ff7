"""The demo's settings: one replay of drifted traffic must be able to raise the alert."""

import pytest

from app.config import load_config
from app.demo import demo_config
from tests.configs import LOCAL_CONFIG


@pytest.mark.parametrize("traffic", [500, 1000, 2000, 10_000])
def test_one_replay_completes_a_monitor_window_whatever_the_split(traffic):
    cfg = demo_config(load_config(LOCAL_CONFIG), traffic)
    # The drift alert needs a complete window of one variant; a challenger from an earlier run
    # may hold part of the split, but one variant always holds at least half of the replay.
    assert cfg.monitor.window <= traffic / 2
    # A drift incident opens on that same window.
    assert cfg.retrain.min_samples <= cfg.monitor.window


def test_the_demos_retrain_trains_on_the_warehouse_where_its_drifted_rows_land():
    cfg = load_config(LOCAL_CONFIG)
    assert demo_config(cfg, 2000).retrain.data == "warehouse"
