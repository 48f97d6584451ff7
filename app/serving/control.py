"""ServeControl: the small detached actor every replica watches for live changes.

It holds the experiment settings and a generation number that moves on every change (a
new split, a promotion, a rollback). Replicas poll it and reload in the background while the
old model keeps answering, which is how a change reaches *all* replicas with no failed request
(a Serve handle call reaches only one). The settings are persisted, so a restarted actor or
a redeployed app starts from the last change, not from the config file; an unreadable state
file is treated as absent (one warning). They live in the shared state store, so a controller
on any node reads them, and two never silently overwrite each other.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from app.cluster.actors import detached_actor
from app.config import AppConfig, ExperimentConfig
from app.data.state import state_store, update

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


def load_saved(data: bytes | None, where: str) -> Saved | None:
    """The persisted settings (validated), or None if there are none or they cannot be read."""
    if data is None:
        return None
    try:
        saved = json.loads(data)
        declared = saved.get("declared")
        return Saved(
            ControlState(int(saved["generation"]), ExperimentConfig.model_validate(saved["experiment"])),
            None if declared is None else ExperimentConfig.model_validate(declared),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # truncated, garbled
        log.warning("serve control state %s is unreadable (%s): starting from the config", where, exc)
        return None


class ServeControl:
    def __init__(self, cfg: AppConfig):
        self.store, self.key = state_store(cfg.storage), cfg.storage.experiment_state
        self.where = f"{self.store.location}/{self.key}"
        self.generation = 0
        self.experiment = cfg.serve.experiment
        self.declared: ExperimentConfig | None = None  # the settings last deployed from a serve config
        stored = self.store.read(self.key)
        saved = load_saved(None if stored is None else stored.data, self.where)
        if saved is not None:
            self.experiment, self.declared = saved.state.experiment, saved.declared
            self.generation = saved.state.generation
        elif stored is not None:
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
        return self._save(keep_stored=False)

    def bump(self) -> ControlState:
        """A change of models behind the aliases (promote, rollback): replicas reload."""
        return self._save(keep_stored=True)

    def _save(self, *, keep_stored: bool) -> ControlState:
        """Write the settings over the stored ones, with a generation past every earlier one.
        Another controller's write in between (a second cluster on the same state, an actor
        restarted while the old one still ran) is never overwritten unseen: a bump adopts its
        settings, a new setting is applied on top of them."""

        def change(data: bytes | None) -> bytes:
            theirs = load_saved(data, self.where)
            if theirs is not None:
                self.generation = max(self.generation, theirs.state.generation)
                if keep_stored:
                    self.experiment, self.declared = theirs.state.experiment, theirs.declared
            self.generation += 1
            declared = None if self.declared is None else self.declared.model_dump()
            saved = {
                "generation": self.generation,
                "experiment": self.experiment.model_dump(),
                "declared": declared,
            }
            return json.dumps(saved).encode()

        update(self.store, self.key, change)
        return self.state()


def get_control(cfg: AppConfig):
    # Retried calls are safe: they are reads or last-writer-wins writes.
    return detached_actor(ServeControl, "serve-control", str(cfg.storage.path()), cfg, max_task_retries=-1)
