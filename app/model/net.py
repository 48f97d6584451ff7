"""TabularMLP: an MLP over scaled numerics and categorical embeddings, one logit out, and its
batched positive-class probabilities."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network before loading its weights."""

    n_numeric: int
    cardinalities: tuple[int, ...]
    width: int = 64
    depth: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return {**asdict(self), "cardinalities": list(self.cardinalities)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(
            n_numeric=int(d["n_numeric"]),
            cardinalities=tuple(int(c) for c in d["cardinalities"]),
            width=int(d["width"]),
            depth=int(d["depth"]),
            dropout=float(d["dropout"]),
        )


def embedding_dim(cardinality: int) -> int:
    """A common rule of thumb: grows with the vocabulary, capped so rare columns stay small."""
    return max(2, min(16, (cardinality + 1) // 2))


class TabularMLP(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in spec.cardinalities)
        width_in = spec.n_numeric + sum(embedding_dim(c) for c in spec.cardinalities)
        layers: list[nn.Module] = []
        for _ in range(spec.depth):
            layers += [nn.Linear(width_in, spec.width), nn.ReLU(), nn.Dropout(spec.dropout)]
            width_in = spec.width
        layers.append(nn.Linear(width_in, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric, *(emb(categorical[:, i]) for i, emb in enumerate(self.embeddings))]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)


@torch.no_grad()
def predict_proba(
    model: nn.Module, numeric: np.ndarray, categorical: np.ndarray, *, batch_size: int = 65_536
) -> np.ndarray:
    """Probabilities of the positive class, in float64."""
    model.eval()
    out = []
    for i in range(0, len(numeric), batch_size):
        logits = model(
            torch.from_numpy(numeric[i : i + batch_size]), torch.from_numpy(categorical[i : i + batch_size])
        )
        out.append(torch.sigmoid(logits.float()).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
