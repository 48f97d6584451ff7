"""The traffic record: what a serving replica tells the monitor about one scored row.

Defined here, in the layer that reads it (the monitor counts, windows and logs it), and built
by the writer (serving's request path), so a renamed field breaks both sides at once instead of
a key silently going missing. It crosses the actor boundary as this type; the monitor flattens
it into the traffic log's row (`row()`) on arrival.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

SHADOW_SUFFIX = "-shadow"  # a shadow prediction's request id: the live request's, suffixed
OK, ERROR = "ok", "error"
# The producer of an outcome logged before outcomes named theirs.
UNATTRIBUTED = "unattributed"


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    """One scored (or failed) row. `score` and `label` are None for a row that failed;
    `latency_ms` is the request's time per row it held for this variant, on one row per
    (request, variant) only (None on the others): a request counts once in a latency sample,
    and a client's large batch is not a slow request."""

    request_id: str
    experiment: str
    variant: str
    model_version: int
    key: str
    score: float | None
    label: int | None
    latency_ms: float | None
    features: Mapping[str, object] = field(default_factory=dict)
    shadow: bool = False
    status: str = OK
    # The key is the entity id the row was scored for (an outcome by entity + time may join it),
    # not a key the client chose (which may be any entity's id).
    by_entity: bool = False
    logged_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def log_id(self) -> str:
        """The id the log keeps: a shadow copy's is its live request's, suffixed."""
        return self.request_id + SHADOW_SUFFIX if self.shadow else self.request_id

    def row(self) -> dict:
        """The traffic log's flat row (NaN features as nulls), as the monitor stores it."""
        rec = {
            "request_id": self.log_id,
            "logged_at": self.logged_at,
            "experiment": self.experiment,
            "variant": self.variant,
            "model_version": int(self.model_version),
            "shadow": self.shadow,
            "pred_score": self.score,
            "pred_label": self.label,
            "latency_ms": None if self.latency_ms is None else float(self.latency_ms),
            "status": self.status,
            "key": self.key,
            "by_entity": self.by_entity,
        }
        for name, value in self.features.items():
            rec[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        return rec
