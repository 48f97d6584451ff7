"""Ray-free training steps: one epoch of training, one pass of evaluation.

Batches are dicts with "numeric", "categorical" and (for training) "label" tensors, as the
preprocessor produces them; Ray Train feeds these from dataset shards, tests from lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

Batch = dict[str, torch.Tensor]
_LOSS = nn.BCEWithLogitsLoss(reduction="sum")


def _autocast(device: torch.device, enabled: bool):
    # Mixed precision only where it pays: CUDA. bfloat16 needs no loss scaling.
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def array_batches(
    arrays: dict[str, np.ndarray], batch_size: int, *, rng: np.random.Generator | None = None
) -> list[Batch]:
    """Tensor batches from in-memory arrays (shuffled when `rng` is given)."""
    n = len(next(iter(arrays.values())))
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [
        {k: torch.from_numpy(v[order[i : i + batch_size]]) for k, v in arrays.items()}
        for i in range(0, n, batch_size)
    ]


def model_arrays(df, pre, label: str) -> dict[str, np.ndarray]:
    """A frame's rows as the model's input arrays (the preprocessor's) and float32 labels."""
    return {**pre.transform_batch(df), "label": df[label].to_numpy(dtype=np.float32)}


def worker_shards(arrays: dict[str, np.ndarray], workers: int, *, seed: int) -> list[dict[str, np.ndarray]]:
    """The rows dealt at random into `workers` shards of equal size.

    DDP steps every worker in lockstep, so each must see as many batches: as torch's
    `DistributedSampler` does, the last shards are topped up with the first rows of the
    permutation (fewer than `workers` rows repeat) rather than leaving rows out."""
    n = len(next(iter(arrays.values())))
    order = np.resize(np.random.default_rng(seed).permutation(n), -(-n // workers) * workers)
    return [{k: v[order[i::workers]] for k, v in arrays.items()} for i in range(workers)]


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | None = None,
    amp: bool = False,
) -> tuple[float, int]:
    """One pass over `batches`; returns (mean loss, rows seen)."""
    device = device or torch.device("cpu")
    model.train()
    total, rows = 0.0, 0
    for batch in batches:
        batch = _to(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            logits = model(batch["numeric"], batch["categorical"])
        loss = _LOSS(logits.float(), batch["label"].float())
        (loss / len(logits)).backward()
        optimizer.step()
        total += float(loss.detach())
        rows += len(logits)
    return (total / rows if rows else float("nan")), rows


@torch.no_grad()
def eval_epoch(
    model: nn.Module, batches: Iterable[Batch], *, device: torch.device | None = None
) -> tuple[float, int]:
    """Summed log loss and row count (sums, so shards can be added across workers)."""
    device = device or torch.device("cpu")
    model.eval()
    total, rows = 0.0, 0
    for batch in batches:
        batch = _to(batch, device)
        logits = model(batch["numeric"], batch["categorical"])
        total += float(_LOSS(logits.float(), batch["label"].float()))
        rows += len(logits)
    return total, rows
