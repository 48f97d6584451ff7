"""Distributed training with Ray Train's TorchTrainer (DDP): gloo on CPU, nccl on GPU.

Workers take their shard of the preprocessed rows from the object store (or, with
`mlp.cache_shards` off, stream it from a Ray Dataset every epoch), checkpoint every epoch (rank 0),
stop early on validation loss, and resume from the last checkpoint when a worker dies
(`FailureConfig`). The best epoch's weights are what the run returns.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import ray.train
import ray.train.torch
import torch
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig

from app import progress
from app.cluster.connection import connect
from app.cluster.console import verbose_console
from app.config import AppConfig
from app.data.shared_files import shared_files
from app.model.net import ModelSpec, TabularMLP
from app.model.preprocess import Preprocessor
from app.training.loop import array_batches, eval_epoch, model_arrays, train_epoch, worker_shards

STATE_FILE = "state.pt"
TENSOR_DTYPES = {"numeric": torch.float32, "categorical": torch.int64, "label": torch.float32}


@dataclass
class TrainResult:
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.nan
    seconds: float = 0.0
    epochs_completed: int = 0
    epoch_seconds: list[float] = field(default_factory=list)  # rank 0's training time per epoch
    checkpoint_path: str | None = None


def _all_reduce_sum(values: list[float]) -> list[float]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.tolist()
    return values


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker."""
    torch.manual_seed(config["seed"])
    spec = ModelSpec.from_dict(config["spec"])
    model = ray.train.torch.prepare_model(TabularMLP(spec))
    device = ray.train.torch.get_device()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    state = {
        "epoch": -1,
        "best_val_loss": math.inf,
        "bad_epochs": 0,
        "best_weights": None,
        "epoch_seconds": [],
    }
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, weights_only=True)
        _unwrap(model).load_state_dict(state.pop("weights"))
        optimizer.load_state_dict(state.pop("optimizer"))
    rank = ray.train.get_context().get_world_rank()
    train_batches = _epoch_batches("train", config, rank, batch_size=config["batch_size"], shuffle=True)
    valid_batches = _epoch_batches("valid", config, rank, batch_size=8192)
    for epoch in range(state["epoch"] + 1, config["epochs"]):
        started = time.perf_counter()
        train_loss, rows = train_epoch(
            model, train_batches(epoch), optimizer, device=device, amp=config["amp"]
        )
        state["epoch_seconds"].append(time.perf_counter() - started)  # data streaming included
        v_sum, v_rows = eval_epoch(model, valid_batches(epoch), device=device)
        t_sum, v_sum, v_rows, rows = _all_reduce_sum([train_loss * rows, v_sum, v_rows, rows])
        val_loss = v_sum / max(v_rows, 1)
        weights = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
        if val_loss < state["best_val_loss"] - 1e-6:
            state.update(best_val_loss=val_loss, bad_epochs=0, best_weights=weights)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        stop = state["bad_epochs"] >= config["patience"]
        metrics = {
            "epoch": epoch,
            "train_loss": t_sum / max(rows, 1),
            "val_loss": val_loss,
            "best_val_loss": state["best_val_loss"],
            "rows": int(rows),
            "stopped_early": stop,
        }
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:  # one writer; every rank still reports
                torch.save(
                    {**state, "weights": weights, "optimizer": optimizer.state_dict()}, Path(d) / STATE_FILE
                )
                ckpt = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=ckpt)
        if stop:
            break


def _epoch_batches(name: str, config: dict, rank: int, *, batch_size: int, shuffle: bool = False):
    """Batches for one epoch of this worker's shard of dataset `name`.

    With `cache_shards` the shard is the driver's arrays for this rank, read once from the
    object store and reshuffled each epoch: no Ray Data pipeline (a coordinator actor per
    dataset, a streaming split) to start, and no per-batch conversion, which costs more than
    a small model's step. Without it, every epoch streams the shard from Ray Data (for shards
    larger than a worker's memory).
    """
    if not config.get("shards"):
        shard = ray.train.get_dataset_shard(name)
        return lambda epoch: shard.iter_torch_batches(batch_size=batch_size, dtypes=TENSOR_DTYPES)
    arrays = ray.get(config["shards"][name][rank])

    def batches(epoch: int):
        rng = np.random.default_rng([config["seed"], rank, epoch]) if shuffle else None
        return array_batches(arrays, batch_size, rng=rng)

    return batches


def mlp_hyperparameters(cfg: AppConfig) -> dict:
    """An MLP run's searchable and schedule settings, from the `mlp` section (overridable per run)."""
    t = cfg.mlp
    return {
        "lr": t.lr,
        "batch_size": t.batch_size,
        "width": t.width,
        "depth": t.depth,
        "dropout": t.dropout,
        "epochs": t.epochs,
        "patience": t.patience,
        "seed": 0,
    }


def model_spec(pre: Preprocessor, hp: dict) -> ModelSpec:
    """The network for this preprocessor's inputs and the run's width/depth/dropout."""
    return ModelSpec(
        n_numeric=pre.n_numeric,
        cardinalities=tuple(pre.cardinalities),
        width=hp["width"],
        depth=hp["depth"],
        dropout=hp["dropout"],
    )


def train(
    cfg: AppConfig,
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    pre: Preprocessor,
    *,
    overrides: dict | None = None,
    name: str | None = None,
) -> TrainResult:
    """Fit a TabularMLP with Ray Train; returns the best epoch's weights and the history."""
    connect(cfg.ray)
    t = cfg.mlp
    config = {**mlp_hyperparameters(cfg), **(overrides or {})}
    spec = model_spec(pre, config)
    loop_config = {**config, "spec": spec.to_dict(), "amp": t.use_gpu}
    label = cfg.dataset.label
    frames = {"train": train_df, "valid": valid_df}
    datasets = {}
    if t.cache_shards:  # each worker's shard, put in the object store by this driver
        loop_config["shards"] = {
            name: [
                ray.put(shard)
                for shard in worker_shards(model_arrays(df, pre, label), t.num_workers, seed=config["seed"])
            ]
            for name, df in frames.items()
        }
    else:
        datasets = {name: model_dataset(df, pre, label) for name, df in frames.items()}
    name = name or f"train-{time.strftime('%Y%m%dT%H%M%S')}"
    trainer = ray.train.torch.TorchTrainer(
        at_console_log_level(train_loop_per_worker),
        train_loop_config=loop_config,
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu),
        datasets=datasets,
        run_config=run_config(cfg, name),
    )
    started = time.perf_counter()
    with progress.steps("epochs", config["epochs"]) as done:  # rank 0 checkpoints every epoch
        run = shared_files(cfg.storage).under(cfg.storage.checkpoints, name)
        epochs = progress.files_seen(lambda: run.names(run.location), "checkpoint_", done)
        result = fit_with_ctrl_c_left_to_python(trainer, poll=epochs)
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, weights_only=True)
    history = [] if result.metrics_dataframe is None else result.metrics_dataframe.to_dict("records")
    return TrainResult(
        spec=spec,
        state_dict=state["best_weights"] or state["weights"],
        history=history,
        best_val_loss=float(state["best_val_loss"]),
        seconds=time.perf_counter() - started,
        epochs_completed=int(state["epoch"]) + 1,
        epoch_seconds=list(state["epoch_seconds"]),
        checkpoint_path=result.checkpoint.path,
    )


def console_log_level() -> str:
    """What Ray Train may say on the console: its INFO lines (worker group started, a line per
    report with its metrics dict) only with `--verbose`, which sets the root logger to INFO.
    They are always in the Ray session's `logs/train` files."""
    return "INFO" if verbose_console() else "WARNING"


def at_console_log_level(loop: Callable[[dict], None]) -> Callable[[dict], None]:
    """`loop`, run on each worker with Ray Train's per-report line at this driver's
    `console_log_level`. Ray Train 2.60 logs that line under a logger named by its module's
    file path, outside "ray.train", so `LoggingConfig` does not reach it."""
    level = console_log_level()

    def loop_at_level(config: dict) -> None:
        from ray.train.v2._internal.execution import context  # the module that logs it

        logging.getLogger(context.__file__).setLevel(level)
        loop(config)

    return loop_at_level


def run_config(cfg: AppConfig, name: str) -> RunConfig:
    """A training run's checkpoints (with the shared data files, where a worker restarted on
    any node finds them; the last two kept), the worker failures it survives, and Ray Train's
    console level (`console_log_level`)."""
    return RunConfig(
        name=name,
        **shared_files(cfg.storage).ray_storage(cfg.storage.checkpoints),
        failure_config=FailureConfig(max_failures=cfg.model.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
        logging_config=LoggingConfig(log_level=console_log_level()),
    )


def fit_with_ctrl_c_left_to_python(trainer, *, poll: Callable[[], None] = lambda: None) -> ray.train.Result:
    """`trainer.fit()`, on a thread of its own so that Ctrl-C stays a KeyboardInterrupt.

    On the main thread Ray Train (2.60) installs its own SIGINT handler, which aborts the run and
    exits the whole process with status 1 and no message; from another thread it installs none,
    so the CLI can say what happened and how to go on. The thread is a daemon: an interrupted
    driver exits without waiting for it, and the run's actors, owned by the driver, end with it.
    `poll` runs every half second while the run lasts (a progress bar's update).
    """
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():  # short waits: a signal caught by another thread still gets seen
        thread.join(0.5)
        poll()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def model_dataset(df: pd.DataFrame, pre: Preprocessor, label: str) -> ray.data.Dataset:
    """Preprocessed rows as a Ray Dataset with tensor columns, sharded to workers by Ray Train.

    Materialized once: every epoch re-reads it from the object store, not from pandas."""

    return (
        ray.data.from_pandas(df)
        .map_batches(model_arrays, batch_format="pandas", fn_kwargs={"pre": pre, "label": label})
        .materialize()
    )
