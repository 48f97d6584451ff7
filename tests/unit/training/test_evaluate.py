import numpy as np
import pandas as pd
import pytest

from app.training.evaluate import binary_metrics, expected_calibration_error, passes_gate, sliced_metrics


def test_metrics_of_a_perfect_and_a_random_model():
    y = np.array([0, 0, 1, 1] * 50)
    perfect = binary_metrics(y, y * 0.98 + 0.01)
    assert perfect["auc"] == 1.0 and perfect["accuracy"] == 1.0 and perfect["brier"] < 0.001
    flat = binary_metrics(y, np.full(len(y), 0.5))
    assert flat["auc"] == 0.5 and flat["log_loss"] == pytest.approx(np.log(2))


def test_one_class_gives_undefined_auc_not_a_crash():
    assert np.isnan(binary_metrics(np.zeros(10), np.full(10, 0.2))["auc"])


def test_calibration_error_of_calibrated_scores_is_small():
    rng = np.random.default_rng(0)
    p = rng.random(20_000)
    y = (rng.random(20_000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.3, 0, 1)) > 0.2


def test_slices_skip_tiny_groups():
    frame = pd.DataFrame({"c": ["a"] * 100 + ["b"] * 5})
    y = np.array([0, 1] * 52 + [1])
    out = sliced_metrics(frame, y, np.full(105, 0.5), ["c"])
    assert list(out["c"]) == ["a"]


@pytest.mark.parametrize(
    ("cand", "champ", "metric", "ok"),
    [
        (0.80, 0.80, "auc", True),
        (0.796, 0.80, "auc", True),
        (0.79, 0.80, "auc", False),
        (0.50, 0.49, "log_loss", False),
        (0.494, 0.49, "log_loss", True),
    ],
)
def test_gate(cand, champ, metric, ok):
    passed, reason = passes_gate({metric: cand}, {metric: champ}, metric=metric, margin=0.005)
    assert passed is ok and metric in reason


def test_gate_without_champion_passes():
    assert passes_gate({"auc": 0.6}, None, metric="auc", margin=0)[0]
