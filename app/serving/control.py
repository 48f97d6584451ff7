"""ServeControl: the small detached actor every replica watches for live changes.

It holds the experiment settings and a generation number that moves on every change (a
new split, a promotion, a rollback). Replicas poll it and reload in the background while the
old model keeps answering, which is how a change reaches *all* replicas with no failed request
(a Serve handle call reaches only one). The settings are persisted, so a restarted actor or
a redeployed app starts from the last change, not from the config file; an unreadable state
file is treated as absent (one warning).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from app.cluster.actors import detached_actor
from app.config import AppConfig, ExperimentConfig
from app.files import atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlState:
    """What replicas follow: the experiment settings and the generation of the last change."""

    generation: int
    experiment: ExperimentConfig


@dataclass(frozen=True)
class Saved:
    state: ControlState
    declared: ExperimentConfig | None  # the settings last deployed from a serve config


def load_saved(path: Path) -> Saved | None:
    """The persisted settings (validated), or None if there are none or they cannot be read."""
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        declared = saved.get("declared")
        return Saved(
            ControlState(int(saved["generation"]), ExperimentConfig.model_validate(saved["experiment"])),
            None if declared is None else ExperimentConfig.model_validate(declared),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # truncated, garbled
        log.warning("serve control state %s is unreadable (%s): starting from the config", path, exc)
        return None


class ServeControl:
    def __init__(self, cfg: AppConfig):
        self.path = cfg.storage.experiment_state
        self.generation = 0
        self.experiment = cfg.serve.experiment
        self.declared: ExperimentConfig | None = None  # the settings last deployed from a serve config
        saved = load_saved(self.path)
        if saved is not None:
            self.experiment, self.declared = saved.state.experiment, saved.declared
            self.generation = saved.state.generation
        elif self.path.exists():
            # Replicas reload when the generation differs from theirs: a fresh, large one makes
            # every replica pick up these settings, whatever generation it last saw.
            self.generation = int(time.time())

    def state(self) -> ControlState:
        return ControlState(self.generation, self.experiment)

    def declare(self, experiment: ExperimentConfig) -> ControlState:
        """Settings from a (re)deployed serve config: applied when they differ from the last
        deployed ones, so a restarting replica does not undo a live `PUT /experiment`."""
        if experiment == self.declared:
            return self.state()
        self.declared = experiment
        return self.set_experiment(experiment)

    def set_experiment(self, experiment: ExperimentConfig) -> ControlState:
        """Store new experiment settings (validated by their type); every replica picks them up."""
        self.experiment = experiment
        return self.bump()

    def bump(self) -> ControlState:
        """A change of models behind the aliases (promote, rollback): replicas reload."""
        self.generation += 1
        declared = None if self.declared is None else self.declared.model_dump()
        saved = {
            "generation": self.generation,
            "experiment": self.experiment.model_dump(),
            "declared": declared,
        }
        atomic_write_text(self.path, json.dumps(saved))
        return self.state()


def get_control(cfg: AppConfig):
    # Retried calls are safe: they are reads or last-writer-wins writes.
    return detached_actor(ServeControl, "serve-control", str(cfg.storage.path()), cfg, max_task_retries=-1)
