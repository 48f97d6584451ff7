"""The search's verdict: the model family and hyperparameters that training fits next.

A search (`mlsys tune`, or the pipeline's) ends by writing its verdict: each family's best
hyperparameters with their validation log loss, and the family with the lowest (what
`model.family: auto` trains). `mlsys train` and a later pipeline or retrain job read it, so
the best configuration found is the one trained and gated, not only printed. A verdict
searched for another problem (other dataset or features sections) is ignored, and an
unreadable one is treated as absent with one warning. It is kept in the state store, so a
retrain job on any node reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field

from app.config import AppConfig
from app.data import state

log = logging.getLogger(__name__)
TRAINABLE = ("mlp", "gbdt")  # the families a search compares (the random forest is a baseline)


@dataclass
class Choice:
    family: str  # the trainable family with the lowest validation log loss
    best: dict[str, dict] = field(default_factory=dict)  # family -> {"overrides", "val_loss"}
    problem: str = ""  # `problem_key` of the config it was searched for
    searched_at: str = ""

    def for_family(self, family: str) -> tuple[str, dict]:
        """(family to train, its searched hyperparameters) for a configured `model.family`."""
        chosen = self.family if family == "auto" else family
        return chosen, dict(self.best.get(chosen, {}).get("overrides", {}))


def problem_key(cfg: AppConfig) -> str:
    """What a search's verdict is valid for: the data set's columns and the features. Not where
    the files are: a retrain job resolves the same source from another working directory."""
    dataset = cfg.dataset.model_dump(mode="json", exclude={"source"})
    blob = json.dumps({"dataset": dataset, "features": cfg.features.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def choose(cfg: AppConfig, best: dict[str, dict]) -> Choice:
    """The verdict over each searched family's {"overrides", "val_loss"}."""
    scored = {f: b for f, b in best.items() if f in TRAINABLE and math.isfinite(b["val_loss"])}
    if not scored:
        raise ValueError("no trainable family finished a search trial")
    winner = min(scored, key=lambda f: scored[f]["val_loss"])
    return Choice(
        family=winner,
        best=best,
        problem=problem_key(cfg),
        searched_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def key(cfg: AppConfig) -> str:
    return f"{cfg.storage.reports}/search.json"


def save(cfg: AppConfig, choice: Choice) -> None:
    state.put_json(state.state_store(cfg.storage), key(cfg), asdict(choice))


def load(cfg: AppConfig) -> Choice | None:
    """The last search's verdict for this problem, or None."""
    store = state.state_store(cfg.storage)
    where = state.where(store, key(cfg))
    try:
        saved = store.read(key(cfg))
        if saved is None:
            return None
        choice = Choice(**json.loads(saved.data))
        if choice.family not in TRAINABLE or not isinstance(choice.best, dict):
            raise ValueError(f"family {choice.family!r}")
    except (OSError, ValueError, TypeError) as exc:
        log.warning("search verdict %s is unreadable (%s): ignoring it", where, exc)
        return None
    if choice.problem != problem_key(cfg):
        log.info("search verdict %s is for another dataset/features definition: ignoring it", where)
        return None
    return choice
