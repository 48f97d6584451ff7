"""The demo's settings: one replay of shifted traffic must be able to raise the alerts."""

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


@pytest.mark.parametrize("traffic", [500, 1000, 2000, 10_000])
def test_the_demos_retrain_learns_from_served_traffic_and_its_outcomes_alone(traffic):
    cfg = demo_config(load_config(LOCAL_CONFIG), traffic)
    assert cfg.retrain.data == "production"
    # The replay after the change (2 x traffic requests) gives the champion at least half of
    # them, with a challenger holding the rest: room for the persistent decay twice over.
    assert 2 * cfg.retrain.drift_windows * cfg.monitor.performance_window <= traffic
