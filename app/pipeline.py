"""Stage order: the only module that knows which stage runs after which.

etl -> features (apply, materialize) -> [search] -> train -> evaluate -> gate -> register.
Each stage is a library call; this module sequences them and reports progress. The search's
verdict (`app.training.choice`) links the search to training: the family and hyperparameters
it found are what `train_and_register` fits, also in a later `mlsys train` or retrain job.
The training set is what `retrain.data` names (`app.monitoring.training_data`: the warehouse,
labelled production traffic, or both); the registered version's lineage says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.cluster.connection import connect
from app.config import AppConfig
from app.data.etl import EtlReport, run_etl
from app.features.store import FeatureClient
from app.model import trees
from app.model.bundle import FAMILIES
from app.monitoring import bands
from app.monitoring.training_data import training_data
from app.progress import console  # the stages' spinner and the bars inside it share it
from app.registry.registry import CHALLENGER, CHAMPION, Registry
from app.training import choice as verdict
from app.training.baselines import hgb_baseline
from app.training.dataset import Splits, build_splits
from app.training.evaluate import binary_metrics, passes_gate
from app.training.fit import evaluate_bundle, fit_candidate, make_preprocessor, preflight
from app.training.tune import TORCH_SPACE, SearchResult, tune_random_forest, tune_torch


@dataclass
class TrainOutcome:
    version: int | None  # None: the gate refused the candidate
    alias: str | None
    gate: str
    metrics: dict
    family: str = "mlp"
    source: str = "config"  # where the hyperparameters came from: config | search (<when>) | caller


@dataclass
class PipelineResult:
    etl: EtlReport | None = None
    feature_partitions: int = 0
    materialized: tuple | None = None
    training: TrainOutcome | None = None
    search: SearchOutcome | None = None
    stages: dict[str, float] = field(default_factory=dict)


def stage(stages: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    """Run one stage with a spinner, print its time and keep it in `stages`."""
    started = time.perf_counter()
    with console.status(f"[bold]{name}[/] ..."):
        value = fn()
    stages[name] = round(time.perf_counter() - started, 1)
    console.print(f"[green]✓[/] {name} ({stages[name]} s)")
    return value


def resolve_training(
    cfg: AppConfig, splits: Splits, *, family: str | None = None, overrides: dict | None = None
) -> tuple[str, dict, str]:
    """(family, hyperparameter overrides, their source) for the next training run.

    The family: the caller's, else `model.family`, else (auto) the search verdict's winner.
    The overrides: the caller's, else the verdict's best for that family, else none (the
    config's settings). `auto` with no verdict for this problem runs the search first."""
    family = family or (None if cfg.model.family == "auto" else cfg.model.family)
    if overrides is not None and family is not None:
        return family, overrides, "caller"
    found = verdict.load(cfg)
    if found is None and family is None:
        outcome = search(cfg, splits)
        found = outcome.choice
    if found is None:
        return family, overrides or {}, "caller" if overrides is not None else "config"
    chosen, searched = found.for_family(family or "auto")
    if overrides is not None:
        return chosen, overrides, "caller"
    return chosen, searched, f"search ({found.searched_at})" if searched else "config"


def train_and_register(
    cfg: AppConfig,
    *,
    splits: Splits | None = None,
    overrides: dict | None = None,
    family: str | None = None,
) -> TrainOutcome:
    """Train a candidate, score it and the champion on the same holdout, gate, register.

    The first model becomes the champion; later ones that pass the gate become the challenger.
    """
    preflight(cfg, family)
    splits = splits or chosen_splits(cfg)
    family, overrides, source = resolve_training(cfg, splits, family=family, overrides=overrides)
    bundle = fit_candidate(cfg, splits, overrides=overrides, family=family)
    bundle.lineage.update(splits.lineage)  # which sources: a run tag of the registered version
    registry = Registry(cfg)
    champion = None
    if registry.alias_version(CHAMPION) is not None:
        champion = evaluate_bundle(registry.load(CHAMPION), splits, cfg.dataset.label)["holdout"]
    passed, reason = passes_gate(
        bundle.metrics["holdout"], champion, metric=cfg.registry.gate_metric, margin=cfg.registry.gate_margin
    )
    bundle.metrics["gate"] = {"passed": passed, "reason": reason}
    outcome = TrainOutcome(
        version=None, alias=None, gate=reason, metrics=bundle.metrics, family=family, source=source
    )
    settings = cfg.gbdt if family == trees.FAMILY else cfg.mlp
    params = {
        **cfg.model.model_dump(),
        **settings.model_dump(),
        **overrides,
        "family": family,
        "hyperparameters_from": source,
        "training_data": splits.lineage.get("training_data", "caller"),
    }
    if not passed:  # no version, but a run that says why: a retrain that produced nothing is visible
        registry.record_refused(bundle, params=params, reason=reason)
        return outcome
    # The monitor's learned bands for this version (monitoring/bands.py), at its window sizes.
    bundle.profile["bands"] = bands.learn(
        bundle,
        splits,
        cfg.dataset.label,
        window=cfg.monitor.window,
        performance_window=cfg.monitor.performance_window,
    )
    alias = CHAMPION if champion is None else CHALLENGER
    outcome.version, outcome.alias = registry.register(bundle, params=params, alias=alias), alias
    return outcome


def chosen_splits(cfg: AppConfig) -> Splits:
    """The training set `retrain.data` names; a fallback to the warehouse is said in one line."""
    data = training_data(cfg)
    if data.note:
        console.print(f"[yellow]{data.note}[/]", soft_wrap=True)  # one line, however wide
    return data.splits


@dataclass
class SearchOutcome:
    torch: SearchResult
    forest: SearchResult
    gbdt: SearchResult | None = None  # None: xgboost is not installed (and no family needs it)
    choice: verdict.Choice | None = None
    family: str = "mlp"  # what training fits next: model.family, or the winner when it is auto
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each family's search

    @property
    def overrides(self) -> dict:
        """The searched hyperparameters of `family`, for the final training run."""
        return self.choice.for_family(self.family)[1] if self.choice else {}


def search(cfg: AppConfig, splits: Splits | None = None, *, num_samples: int | None = None) -> SearchOutcome:
    """Ray Tune over each family (torch MLP with ASHA, XGBoost trees with early stopping) and
    the random-forest baseline, on the same split; the verdict is saved for training."""
    preflight(cfg)
    splits = splits or chosen_splits(cfg)
    pre = make_preprocessor(cfg, splits.train)
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], SearchResult]) -> SearchResult:
        started = time.perf_counter()
        found = fn()
        seconds[name] = round(time.perf_counter() - started, 1)
        return found

    torch = timed("mlp", lambda: tune_torch(cfg, splits.train, splits.valid, pre, num_samples=num_samples))
    best = {
        "mlp": {"overrides": {k: torch.best_config[k] for k in TORCH_SPACE}, "val_loss": torch.best_metric}
    }
    gbdt = None
    try:
        trees.xgboost()
    except trees.MissingLibrary as exc:  # only `mlp` gets here (preflight refused the others)
        console.print(f"[yellow]skipping the trees' search:[/] {exc}")
    else:
        from app.training.tune_gbdt import GBDT_SPACE, tune_gbdt

        gbdt = timed("gbdt", lambda: tune_gbdt(cfg, splits.train, splits.valid, pre, num_samples=num_samples))
        best["gbdt"] = {
            "overrides": {k: gbdt.best_config[k] for k in GBDT_SPACE},
            "val_loss": gbdt.best_metric,
        }
    forest = timed("forest", lambda: tune_random_forest(cfg, splits.train, pre, num_samples=num_samples))
    found = verdict.choose(cfg, best)
    verdict.save(cfg, found)
    family, _ = found.for_family(cfg.model.family)
    return SearchOutcome(torch=torch, forest=forest, gbdt=gbdt, choice=found, family=family, seconds=seconds)


def evaluate_registered(cfg: AppConfig, ref: str | int) -> dict:
    """A registered model (alias or version) scored on the current holdout, with a comparison:
    it, the best registered model of each family, and HistGradientBoosting with default
    settings fitted now on the same split."""
    registry = Registry(cfg)
    splits = build_splits(cfg)
    label = cfg.dataset.label
    bundle = registry.load(ref)
    metrics = evaluate_bundle(bundle, splits, label)
    metrics["family"] = bundle.family
    version = registry.alias_version(str(ref)) if not str(ref).isdigit() else int(ref)
    rows = [{"model": f"{ref} (v{version})", "family": bundle.family, **metrics["holdout"]}]
    versions = registry.versions()
    for family in FAMILIES:
        mine = [v for v in versions if v.family == family and v.version != version]
        if mine:
            best = max(mine, key=lambda v: v.metrics.get("holdout.auc", float("-inf")))
            scored = evaluate_bundle(registry.load(best.version), splits, label)["holdout"]
            rows.append({"model": f"best {family} (v{best.version})", "family": family, **scored})
    y = splits.holdout[label].to_numpy(dtype=int)
    hgb = hgb_baseline(splits.train, splits.holdout, bundle.preprocessor, label)
    rows.append({"model": "HistGradientBoosting baseline", "family": "baseline", **binary_metrics(y, hgb)})
    metrics["comparison"] = rows
    return metrics


def run_pipeline(
    cfg: AppConfig, *, source: str | None = None, tune_samples: int | None = None
) -> PipelineResult:
    """etl -> features apply -> materialize -> [search] -> train -> evaluate -> gate -> register."""
    connect(cfg.ray)
    preflight(cfg)  # a missing library or GPU is refused before the first stage
    result = PipelineResult()
    features = FeatureClient(cfg)
    result.etl = stage(result.stages, "etl", lambda: run_etl(cfg, source))
    result.feature_partitions = stage(result.stages, "features apply", features.apply)
    result.materialized = stage(result.stages, "features materialize", features.materialize)
    splits = stage(result.stages, "training set (point-in-time)", lambda: chosen_splits(cfg))
    auto_unsearched = cfg.model.family == "auto" and verdict.load(cfg) is None
    if cfg.tune.in_pipeline or tune_samples or auto_unsearched:
        # Its verdict (saved) is what training then fits: family and hyperparameters.
        result.search = stage(result.stages, "tune", lambda: search(cfg, splits, num_samples=tune_samples))
    result.training = stage(
        result.stages, "train + evaluate + register", lambda: train_and_register(cfg, splits=splits)
    )
    return result
