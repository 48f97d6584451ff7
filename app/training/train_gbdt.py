"""Gradient-boosted trees: in the driver process for a small training set, else distributed
with Ray Train's XGBoostTrainer (data-parallel).

Below `gbdt.in_process_rows` training rows the trees are boosted in this process with the same
parameters, early stopping and preprocessing (`boost_in_process`): Ray Train's fixed cost
(workers, Ray Data shards, the collective, checkpoints: tens of seconds) would dwarf the
boosting itself. Above it, each worker reads its shard of the same preprocessed Ray Datasets
the MLP trains on, builds an XGBoost DMatrix (categorical codes as native categorical
features) and boosts with `app.training.gbdt.boost`; XGBoost's collective (set up by Ray
Train) sums the histograms and the validation log loss across workers, so early stopping sees
the whole validation split. With one worker and one thread per worker both ways give the same
trees, byte for byte (tests/integration/test_families.py).
Rank 0 checkpoints about every `CHECKPOINT_SECONDS` and at the end; a restarted worker group
resumes from the last checkpoint (`FailureConfig`). A GPU run is refused before any worker
starts when the cluster has no GPU.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import ray.train
from ray.train import ScalingConfig

from app.cluster.connection import connect
from app.config import AppConfig, ConfigError
from app.model import trees
from app.model.preprocess import Preprocessor
from app.model.trees import TreeSpec
from app.training.gbdt import arrays_dmatrix, boost, gbdt_hyperparameters, tree_spec
from app.training.train import at_console_log_level, fit_with_ctrl_c_left_to_python, model_dataset, run_config

# Seconds of boosting between checkpoints: a restarted run loses about this much work. A
# checkpoint is small (a few hundred KB of trees) but its report is a barrier across the
# workers (see checkpoint_callback), so a short run checkpoints only at its end.
CHECKPOINT_SECONDS = 60.0
CHECK_EVERY = 10  # rounds between the workers' agreement on whether a checkpoint is due
MODEL_FILE, HISTORY_FILE = "model.ubj", "history.json"
IN_PROCESS, RAY_TRAIN = "in-process", "ray-train"  # which trainer boosted a bundle's trees
ARRAYS = {"numeric": np.float32, "categorical": np.int64, "label": np.float32}


class NoGpu(ConfigError):
    """GPU trees asked for on a cluster without a GPU."""


@dataclass
class GbdtResult:
    spec: TreeSpec
    booster: bytes  # UBJSON
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = float("nan")
    seconds: float = 0.0  # the whole run: workers' start, data, boosting
    boost_seconds: float = 0.0  # rank 0's boosting alone (the last attempt)
    checkpoint_path: str | None = None
    trainer: str = RAY_TRAIN  # IN_PROCESS or RAY_TRAIN


def check_gpu(cfg: AppConfig) -> None:
    """Refuse `gbdt.use_gpu` on a cluster that has no GPU now (workers would wait forever)."""
    if not cfg.gbdt.use_gpu:
        return
    connect(cfg.ray)
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus < 1:
        raise NoGpu(
            "gbdt.use_gpu: GPU trees were asked for, but the Ray cluster has no GPU; set "
            "gbdt.use_gpu: false (MLSYS_GBDT__USE_GPU=false) or run on a cluster with a GPU node up"
        )


def _shard_arrays(name: str) -> dict[str, np.ndarray]:
    parts = list(ray.train.get_dataset_shard(name).iter_batches(batch_size=65_536, batch_format="numpy"))
    if not parts:
        return {k: np.zeros((0,), dtype=t) for k, t in ARRAYS.items()}
    return {k: np.concatenate([p[k] for p in parts]).astype(t, copy=False) for k, t in ARRAYS.items()}


def checkpoint_callback(every_s: float, history: list[dict] | None = None):
    """An XGBoost callback that reports to Ray Train only with a checkpoint: once at least
    `every_s` seconds passed since the last one, and at the end (the early-stopped, trimmed
    trees). A report is a barrier across the workers, about a second on a busy 2-core machine:
    Ray's own callback (a report every round) made a 50-round run take 150 s instead of 1 s, and
    one every 100 rounds still cost 5 s of a 0.5 s run. Rank 0's clock decides, broadcast over
    XGBoost's collective every `CHECK_EVERY` rounds, so every rank reports at the same round.
    The learning curve travels in the checkpoint (`history.json`)."""
    xgb = trees.xgboost()
    from xgboost import collective

    class Checkpoints(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self.history: list[dict] = list(history or [])
            self.started = self.last = time.perf_counter()
            self.offset = 0
            self.log: dict = {}
            self.resumed = len(self.history)

        def before_training(self, model):
            # Resumed training counts epochs from 0 again; the round is the trees' count.
            self.offset = model.num_boosted_rounds()
            return model

        def after_iteration(self, model, epoch: int, evals_log) -> bool:
            self.log = evals_log  # the container's own, kept up to date for after_training
            epoch += self.offset
            self.history.append({"round": epoch, "val_loss": float(evals_log["valid"]["logloss"][-1])})
            if (epoch + 1) % CHECK_EVERY == 0:
                due = time.perf_counter() - self.last >= every_s
                if collective.broadcast(due, 0):  # rank 0 decides for all
                    self._report(model)
                    self.last = time.perf_counter()
            return False

        def after_training(self, model):
            # XGBoost stops calling callbacks at the round one returns True (early stopping,
            # listed first): that round's loss is in the log, not yet in the history.
            losses = self.log.get("valid", {}).get("logloss", [])
            for i in range(len(self.history) - self.resumed, len(losses)):
                self.history.append({"round": self.offset + i, "val_loss": float(losses[i])})
            self._report(model)
            return model

        def _report(self, model) -> None:
            metrics = {"val_loss": self.history[-1]["val_loss"], "round": self.history[-1]["round"]}
            if ray.train.get_context().get_world_rank() != 0:  # one writer; every rank reports
                ray.train.report(metrics, checkpoint=None)
                return
            with tempfile.TemporaryDirectory() as d:
                model.save_model(str(Path(d) / MODEL_FILE))
                seconds = time.perf_counter() - self.started  # this worker's boosting, this attempt
                (Path(d) / HISTORY_FILE).write_text(json.dumps({"history": self.history, "seconds": seconds}))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    return Checkpoints()


def read_checkpoint(checkpoint: ray.train.Checkpoint) -> tuple[object, dict]:
    """(booster, {"history": learning curve, "seconds": boosting time}) from a checkpoint
    written by `checkpoint_callback`."""
    xgb = trees.xgboost()
    with checkpoint.as_directory() as d:
        booster = xgb.Booster()
        booster.load_model(str(Path(d) / MODEL_FILE))
        log = json.loads((Path(d) / HISTORY_FILE).read_text())
    return booster, log


def gbdt_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker, inside XGBoost's collective context."""
    spec = TreeSpec.from_dict(config["spec"])
    dtrain = arrays_dmatrix(_shard_arrays("train"), spec)
    dvalid = arrays_dmatrix(_shard_arrays("valid"), spec)
    start, history = None, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # a restarted worker group: continue from the last checkpoint's trees
        start, log = read_checkpoint(checkpoint)
        history = log["history"]
    boost(
        config,
        dtrain,
        dvalid,
        nthread=config["nthread"],
        use_gpu=config["use_gpu"],
        callbacks=[checkpoint_callback(config["checkpoint_seconds"], history)],
        start=start,
    )


def choose_trainer(cfg: AppConfig, rows: int) -> str:
    """In process below `gbdt.in_process_rows` training rows; on Ray Train above it, and for GPU
    trees (the driver need not be on a GPU node; Ray Train places the workers on one)."""
    m = cfg.gbdt
    return IN_PROCESS if rows < m.in_process_rows and not m.use_gpu else RAY_TRAIN


def _frame_arrays(df: pd.DataFrame, pre: Preprocessor, label: str) -> dict[str, np.ndarray]:
    """What a Ray Train worker's shard holds (`model_arrays`, then `ARRAYS`' dtypes)."""
    arrays = {**pre.transform_batch(df), "label": df[label].to_numpy(dtype=np.float32)}
    return {k: np.asarray(arrays[k]).astype(t, copy=False) for k, t in ARRAYS.items()}


def boost_in_process(
    cfg: AppConfig, train_df: pd.DataFrame, valid_df: pd.DataFrame, pre: Preprocessor, hp: dict
) -> GbdtResult:
    """The trees a Ray Train run would fit, boosted here: the same arrays, parameters and early
    stopping, on one worker's threads (`gbdt.cpus_per_worker`): on two shared cores a second
    xgboost thread contending with Ray's processes made boosting up to 20x slower
    (docs/performance.md, "Model families")."""
    started = time.perf_counter()
    spec = TreeSpec.for_preprocessor(pre)
    label = cfg.dataset.label
    dtrain = arrays_dmatrix(_frame_arrays(train_df, pre, label), spec)
    dvalid = arrays_dmatrix(_frame_arrays(valid_df, pre, label), spec)
    boost_started = time.perf_counter()
    run = boost(hp, dtrain, dvalid, nthread=cfg.gbdt.cpus_per_worker)
    finished = time.perf_counter()
    return GbdtResult(
        spec=tree_spec(pre, hp, run.booster),
        booster=trees.booster_bytes(run.booster),
        history=run.history,
        best_val_loss=run.best_val_loss,
        seconds=finished - started,
        boost_seconds=finished - boost_started,
        trainer=IN_PROCESS,
    )


def train_gbdt(
    cfg: AppConfig,
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    pre: Preprocessor,
    *,
    overrides: dict | None = None,
    num_workers: int | None = None,
    name: str | None = None,
    trainer: str | None = None,
) -> GbdtResult:
    """Fit gradient-boosted trees, in process or with XGBoostTrainer (`trainer`, default
    `choose_trainer`'s); returns the best round's booster."""
    trees.xgboost()  # a missing library is one line, before anything starts
    hp = {**gbdt_hyperparameters(cfg), **(overrides or {})}
    if (trainer or choose_trainer(cfg, len(train_df))) == IN_PROCESS:
        return boost_in_process(cfg, train_df, valid_df, pre, hp)
    return _ray_train(cfg, train_df, valid_df, pre, hp, num_workers=num_workers, name=name)


def _ray_train(
    cfg: AppConfig,
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    pre: Preprocessor,
    hp: dict,
    *,
    num_workers: int | None,
    name: str | None,
) -> GbdtResult:
    from ray.train.xgboost import XGBoostTrainer

    check_gpu(cfg)
    connect(cfg.ray)
    m = cfg.gbdt
    spec = TreeSpec.for_preprocessor(pre)
    label = cfg.dataset.label
    workers = num_workers or m.num_workers
    trainer = XGBoostTrainer(
        at_console_log_level(gbdt_loop_per_worker),
        train_loop_config={
            **hp,
            "spec": spec.to_dict(),
            "nthread": m.cpus_per_worker,
            "use_gpu": m.use_gpu,
            "checkpoint_seconds": hp.get("checkpoint_seconds", CHECKPOINT_SECONDS),
        },
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=m.use_gpu, resources_per_worker={"CPU": m.cpus_per_worker}
        ),
        datasets={"train": model_dataset(train_df, pre, label), "valid": model_dataset(valid_df, pre, label)},
        run_config=run_config(cfg, name or f"train-gbdt-{time.strftime('%Y%m%dT%H%M%S')}"),
    )
    started = time.perf_counter()
    result = fit_with_ctrl_c_left_to_python(trainer)
    booster, log = read_checkpoint(result.checkpoint)
    return GbdtResult(
        spec=tree_spec(pre, hp, booster),
        booster=trees.booster_bytes(booster),
        history=log["history"],
        boost_seconds=float(log["seconds"]),
        best_val_loss=float(booster.best_score) if booster.best_score is not None else float("nan"),
        seconds=time.perf_counter() - started,
        checkpoint_path=result.checkpoint.path,
    )
