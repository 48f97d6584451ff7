"""Hyperparameter search with Ray Tune: the torch model (ASHA) and a random-forest baseline.

Torch trials report validation loss every epoch, so ASHA stops weak ones early; a trial
counts with its best epoch's loss, as the final run keeps its best epoch's weights. The
forest is scored by 3-fold cross-validated AUC. Every trial is tracked in MLflow, tagged
with its family (the trees' search is in `tune_gbdt.py`). Concurrency comes from the config,
capped by what the cluster can hold at once.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import pandas as pd
import ray
import torch
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.experimental.output import AirVerbosity
from ray.tune.experimental.output import ProgressReporter as AirProgressReporter
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator

from app import progress
from app.cluster.connection import connect
from app.cluster.console import verbose_console
from app.config import AppConfig
from app.data.shared_files import shared_files
from app.model.bundle import FAMILY_TAG
from app.model.net import ModelSpec, TabularMLP
from app.model.preprocess import Preprocessor
from app.training.baselines import tree_matrix
from app.training.loop import array_batches, eval_epoch, model_arrays, train_epoch

TORCH_SPACE = {
    "lr": tune.loguniform(1e-4, 1e-2),
    "width": tune.choice([32, 64, 128]),
    "depth": tune.choice([1, 2, 3]),
    "dropout": tune.uniform(0.0, 0.3),
    "batch_size": tune.choice([256, 512, 1024]),
}
RF_SPACE = {
    "n_estimators": tune.choice([50, 100, 200, 300]),
    "max_depth": tune.choice([5, 10, 15, None]),
    "min_samples_split": tune.choice([2, 5, 10]),
}
RF_CPUS = 2


@dataclass
class SearchResult:
    best_config: dict
    best_metric: float
    trials: pd.DataFrame


def max_concurrent_trials(cfg: AppConfig, cpus_per_trial: float) -> int:
    """The configured concurrency, but never more trials than the cluster's CPUs can hold."""
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, min(cfg.tune.max_concurrent, int(cpus // cpus_per_trial)))


def _scheduler(cfg: AppConfig, max_t: int):
    if cfg.tune.scheduler == "asha":
        return ASHAScheduler(max_t=max_t, grace_period=1, reduction_factor=2)
    return FIFOScheduler()


def torch_trial(config: dict, *, base: dict, data: dict) -> None:
    """One search trial: single-process torch on in-memory arrays, a report per epoch for ASHA."""
    torch.manual_seed(base["seed"])
    rng = np.random.default_rng(base["seed"])
    model = TabularMLP(
        ModelSpec(
            n_numeric=base["n_numeric"],
            cardinalities=tuple(base["cardinalities"]),
            width=config["width"],
            depth=config["depth"],
            dropout=config["dropout"],
        )
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    for epoch in range(base["epochs"]):
        train_loss, _ = train_epoch(
            model, array_batches(data["train"], config["batch_size"], rng=rng), optimizer
        )
        v_sum, v_rows = eval_epoch(model, array_batches(data["valid"], 8192))
        tune.report({"val_loss": v_sum / v_rows, "train_loss": train_loss, "epoch": epoch})


def tune_torch(
    cfg: AppConfig,
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    pre: Preprocessor,
    *,
    num_samples: int | None = None,
) -> SearchResult:
    """Search lr, width, depth, dropout and batch size; minimise validation log loss.

    Trials are single-process (a CPU-sized tabular model gains little from DDP at search
    time); the final run trains the winner with DDP. One CPU per trial, so concurrency is
    the configured maximum capped by the cluster's CPUs.
    """
    connect(cfg.ray)
    label = cfg.dataset.label
    data = {"train": model_arrays(train_df, pre, label), "valid": model_arrays(valid_df, pre, label)}
    base = {
        "n_numeric": pre.n_numeric,
        "cardinalities": pre.cardinalities,
        "epochs": cfg.mlp.epochs,
        "seed": 0,
    }
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(torch_trial, base=base, data=data),
            {"cpu": 1},
        ),
        param_space=TORCH_SPACE,
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=num_samples or cfg.tune.num_samples,
            max_concurrent_trials=max_concurrent_trials(cfg, 1),
            scheduler=_scheduler(cfg, cfg.mlp.epochs),
            # Seeded sampling: the same config and data search the same trials, in the same order.
            search_alg=BasicVariantGenerator(random_state=base["seed"]),
        ),
        run_config=tune_run_config(cfg, "tune-torch", family="mlp"),
    )
    return summarise(tuner.fit(), "val_loss", mode="min", scope="all")


def rf_cv_auc(config: dict, X: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    model = RandomForestClassifier(**config, n_jobs=RF_CPUS, random_state=seed)
    return float(cross_val_score(model, X, y, cv=3, scoring="roc_auc").mean())


def tune_random_forest(
    cfg: AppConfig,
    train_df: pd.DataFrame,
    pre: Preprocessor,
    *,
    num_samples: int | None = None,
    max_rows: int = 50_000,
) -> SearchResult:
    """The baseline search: 3-fold cross-validated AUC, 2 CPUs per trial."""
    connect(cfg.ray)
    sample = train_df.sample(min(len(train_df), max_rows), random_state=0)
    X = np.nan_to_num(tree_matrix(sample, pre), nan=-1.0)  # forests take no NaN
    y = sample[cfg.dataset.label].to_numpy(dtype=int)

    def trial(config: dict, X: np.ndarray, y: np.ndarray) -> None:
        tune.report({"cv_auc": rf_cv_auc(config, X, y)})

    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, X=X, y=y), {"cpu": RF_CPUS}),
        param_space=RF_SPACE,
        tune_config=tune.TuneConfig(
            metric="cv_auc",
            mode="max",
            num_samples=num_samples or cfg.tune.num_samples,
            max_concurrent_trials=max_concurrent_trials(cfg, RF_CPUS),
        ),
        run_config=tune_run_config(cfg, "tune-rf", family="random_forest"),
    )
    return summarise(tuner.fit(), "cv_auc", mode="max")


def tune_run_config(cfg: AppConfig, name: str, *, family: str) -> tune.RunConfig:
    """Trials checkpoint with the shared data files and are logged to MLflow experiment
    `mlsys-<name>`, each run tagged `mlsys.family`. The terminal shows a bar of finished
    trials; Tune's own experiment header and trial tables (a few hundred lines a search) only
    with `--verbose`."""
    verbose = verbose_console()
    return tune.RunConfig(
        name=f"{name}-{time.strftime('%Y%m%dT%H%M%S')}",
        **shared_files(cfg.storage).ray_storage(cfg.storage.checkpoints),
        callbacks=[
            MLflowLoggerCallback(
                tracking_uri=cfg.mlflow_uri, experiment_name=f"mlsys-{name}", tags={FAMILY_TAG: family}
            ),
            *([] if verbose else [TrialsBar(f"{family} trials")]),
        ],
        verbose=None if verbose else 0,  # None: Tune's default
    )


class TrialsBar(AirProgressReporter):
    """The search's display: a bar of finished trials (completed, stopped early or failed), from
    the experiment's start to its end, which Tune also reaches on an error.

    It is a progress reporter of Tune's output engine, so that Tune takes it as the search's
    reporter (the first one among the callbacks) instead of its own, which prints the
    experiment's header and paths even when `verbose=0`."""

    # Tune's per-trial lines (start, result, checkpoint) need more than this reporter's SILENT.
    _start_end_verbosity = AirVerbosity.DEFAULT
    _intermediate_result_verbosity = AirVerbosity.VERBOSE

    def __init__(self, what: str) -> None:
        super().__init__(verbosity=AirVerbosity.SILENT)
        self.what = what
        self.finished = 0
        self._bar: ExitStack | None = None

    def setup(self, start_time: float | None = None, **info) -> None:
        # Called twice: as a callback (with `total_num_samples`), then as the reporter.
        total = info.get("total_num_samples", info.get("total_samples"))
        if self._bar is None:
            self._bar = ExitStack()
            self._done = self._bar.enter_context(progress.steps(self.what, total))

    def experiment_started(self, *args, **kwargs) -> None:
        """Tune's reporter prints the experiment's header here: the bar is enough."""

    def print_heartbeat(self, trials: list, *sys_info, force: bool = False) -> None:
        """Tune's reporter prints its trial table here, every 30 s and at the end."""

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished()

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished()

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        """A failed trial that Tune starts again: not finished."""

    def on_experiment_end(self, trials: list, **info) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _finished(self) -> None:
        self.finished += 1
        if self._bar is not None:
            self._done(self.finished)


def summarise(grid, metric: str, *, mode: str, scope: str = "last") -> SearchResult:
    """The best trial and every trial's row. With `scope="all"` a trial counts with its best
    report (its best epoch), not its last."""
    best = grid.get_best_result(metric=metric, mode=mode, scope=scope)
    frame = grid.get_dataframe(filter_metric=metric, filter_mode=mode)  # each trial's best report
    keep = [c for c in frame.columns if c.startswith("config/") or c in (metric, "training_iteration")]
    history = best.metrics_dataframe
    best_metric = (
        float(history[metric].min() if mode == "min" else history[metric].max())
        if scope == "all" and history is not None and metric in history
        else float(best.metrics[metric])
    )
    return SearchResult(
        best_config=dict(best.config),
        best_metric=best_metric,
        trials=frame[keep].sort_values(metric, ascending=mode == "min"),
    )
