"""The experiment settings a rollout moves through: the challenger in shadow, or at a share.

Pure functions from one `ExperimentConfig` to the next (validated), used by the rollout
controller (`rollout_controller.py`) and tested on plain settings.
"""

from __future__ import annotations

from app.config import ExperimentConfig
from app.registry.registry import CHALLENGER


def in_shadow(experiment: ExperimentConfig) -> ExperimentConfig:
    """The experiment with the challenger scored in shadow and no live share."""
    split = {k: v for k, v in experiment.split.items() if k != CHALLENGER}
    control = experiment.control
    split[control] = split.get(control, 0.0) + experiment.split.get(CHALLENGER, 0.0)
    return ExperimentConfig.model_validate({**experiment.model_dump(), "split": split, "shadow": CHALLENGER})


def split_with(experiment: ExperimentConfig, share: float) -> ExperimentConfig:
    """The experiment with the challenger at `share` of what the control and it serve
    together; other variants keep their shares."""
    control, split = experiment.control, dict(experiment.split)
    others = sum(v for k, v in split.items() if k not in (control, CHALLENGER))
    split[CHALLENGER] = share * (1 - others)
    split[control] = (1 - share) * (1 - others)
    shadow = None if experiment.shadow == CHALLENGER else experiment.shadow
    return ExperimentConfig.model_validate({**experiment.model_dump(), "split": split, "shadow": shadow})
