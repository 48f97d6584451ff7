"""The experiment counts as plain lists and columns, and back: what the monitor's snapshot
(snapshot.py) saves of an `ExperimentCounts` and the restart reads back.

The remembered predictions, the pending feedback and the per-key tallies are columns (the
snapshot writes the first two as parquet); each variant's statistics are a plain dict, its
samples as lists. Fields a snapshot written before them lacks read back as empty.
"""

from __future__ import annotations

from collections import deque

from app.monitoring.abtest import VariantStats
from app.monitoring.counts import SAMPLE, SAMPLED, ExperimentCounts
from app.monitoring.records import UNATTRIBUTED

# The columns of the snapshot's predictions (with request_id and labelled) and per-key counts.
PREDICTION_COLUMNS = ("experiment", "variant", "pred_label", "pred_score", "key", "model_version")
PER_KEY_COLUMNS = ("experiment", "variant", "model_version", "key", "outcomes")
# VariantStats' dicts, saved as they are.
TALLIES = ("agreement", "producers", "capped", "correct_by_producer", "positives_by_producer")


def to_state(counts: ExperimentCounts) -> dict:
    """Everything counted, as plain lists and columns (what `from_state` takes back)."""
    stats = [
        {
            "experiment": e,
            "variant": v,
            **{k: list(x) if isinstance(x, deque) else x for k, x in vars(s).items()},
        }
        for (e, v), s in counts.stats.items()
    ]
    rows = list(counts.predictions.items())
    predictions = {
        "request_id": [r for r, _ in rows],
        **{c: [p[i] for _, p in rows] for i, c in enumerate(PREDICTION_COLUMNS)},
        "labelled": [r in counts.labelled for r, _ in rows],
    }
    pending = {
        "request_id": list(counts.pending),
        "label": [label for label, _ in counts.pending.values()],
        "producer": [producer for _, producer in counts.pending.values()],
    }
    per_key = [(*at, n) for at, n in counts.per_key.items()]
    return {
        "stats": stats,
        "predictions": predictions,
        "pending": pending,
        "pending_dropped": counts.pending_dropped,
        "per_key": {c: [row[i] for row in per_key] for i, c in enumerate(PER_KEY_COLUMNS)},
    }


def from_state(state: dict, **capacities) -> ExperimentCounts:
    """The counts `to_state` saved, within `capacities` (ExperimentCounts' own arguments)."""
    counts = ExperimentCounts(**capacities)
    for s in state["stats"]:
        samples = {k: deque(s.get(k, ()), maxlen=SAMPLE) for k in SAMPLED}  # older snapshots lack some
        fields = {k: s[k] for k in ("requests", "errors", "outcomes", "positives", "correct")}
        added = {k: s.get(k, 0) for k in ("requests_reached", "requests_failed")}  # newer fields
        tallies = {k: dict(s.get(k, {})) for k in TALLIES}
        stats = VariantStats(
            **fields, **added, **tallies, **samples, model_versions=list(s["model_versions"])
        )
        counts.stats[s["experiment"], s["variant"]] = stats
    p = state["predictions"]
    n = len(p["request_id"])
    columns = [p["request_id"], *(p.get(c, [None] * n) for c in PREDICTION_COLUMNS), p["labelled"]]
    for rid, experiment, variant, label, score, key, version, labelled in zip(*columns, strict=True):
        version = None if version is None else int(version)
        counts.remember(rid, (experiment, variant, int(label), float(score), key, version))
        if labelled:
            counts.labelled.add(rid)
    k = state.get("per_key") or {c: [] for c in PER_KEY_COLUMNS}
    for *at, count in zip(*(k[c] for c in PER_KEY_COLUMNS), strict=True):
        counts.per_key[tuple(at)] = int(count)
    counts.labelled &= counts.predictions.keys()
    counts.pending_dropped = int(state["pending_dropped"])
    pending = state["pending"]
    producers = pending.get("producer") or [UNATTRIBUTED] * len(pending["request_id"])
    for rid, label, producer in zip(pending["request_id"], pending["label"], producers, strict=True):
        counts.add_feedback(rid, int(label), producer)  # not remembered as a prediction: waits again
    return counts
