"""ExperimentCounts: per-(experiment, variant) counts of the traffic, with the feedback join,
in bounded memory - what the experiment report and the rollout's guardrails are computed from.

A prediction record's `request_id` makes re-delivery idempotent (an id seen before is not
counted again); a feedback is joined to its prediction by that id, and one that arrives first
waits for it. counts_state.py turns the counts into what the monitor's snapshot saves, and back.

An outcome does not depend on which model answered: the one joined to a live prediction is
also counted for the shadow prediction of the same request (its request id + SHADOW_SUFFIX),
under the shadow variant, so a challenger in shadow is judged on quality before it answers
anyone. The shadow copy is scored after the answer is sent, so its prediction may arrive after
the outcome: the outcome then waits for it (bounded, like the unpaired shadows).

A request counts once per variant it reached, and once as that variant's failure if the
variant failed any of its rows: the row that carries the request's latency tells (serving's
pipeline marks a request's first failed row, else its first answer). No client key counts for
more than `max_per_key` outcomes of a variant's model version (`capped` counts the rest).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

import numpy as np

from app.config import ExperimentConfig
from app.monitoring.abtest import SHADOW_KEY, VariantStats, add_pair, experiment_report
from app.monitoring.experiment import ExperimentReport
from app.monitoring.records import OK, SHADOW_SUFFIX

SAMPLE = 20_000  # recent latencies / scored outcomes kept per variant for percentiles and AUC
UNPAIRED_SHADOWS = 10_000
# Live outcomes whose request's shadow prediction has not arrived (most requests have none:
# the oldest are dropped; a shadow copy arrives within moments of its live answer).
AWAITING_SHADOW = 10_000
# Client keys whose outcomes are counted against the per-key cap (the most recently seen;
# a key forgotten starts again from zero, which takes this many other keys reporting).
KEYS = 100_000
SAMPLED = ("latency_ms", "scores", "labels", "all_scores")  # the VariantStats fields that are samples
# What the counts read of a prediction record, in `ExperimentCounts.count_prediction`'s order.
PREDICTION_FIELDS = (
    "request_id",
    "experiment",
    "variant",
    "status",
    "latency_ms",
    "model_version",
    "pred_label",
    "pred_score",
)
KEY_CAP = "key"  # the reason an outcome is capped: its client key reported enough already


class ExperimentCounts:
    """Per-(experiment, variant) counts with the feedback join, in bounded memory.

    Predictions are remembered by request_id (the most recent `capacity`) so a feedback can
    find its variant; a feedback that arrives before its prediction waits in `pending` (the
    most recent `pending_capacity`; older ones are dropped and counted in `pending_dropped`).
    """

    def __init__(self, capacity: int = 200_000, pending_capacity: int = 100_000):  # ~60 MB + ~10 MB
        self.capacity = capacity
        self.pending_capacity = pending_capacity
        self.stats: dict[tuple[str, str], VariantStats] = {}
        # -> (experiment, variant, pred_label, pred_score, key, model_version)
        self.predictions: OrderedDict[str, tuple] = OrderedDict()
        # Outcomes counted per (experiment, variant, model_version, key), the most recent KEYS.
        self.per_key: OrderedDict[tuple, int] = OrderedDict()
        self.max_per_key: int | None = None  # the monitor sets rollout.max_outcomes_per_key
        self.labelled: set[str] = set()
        self.pending: OrderedDict[str, tuple[int, str]] = OrderedDict()  # -> (label, producer)
        self.pending_dropped = 0
        # Shadow predictions that arrived before their live answer, by the live request id:
        # a single /predict logs its shadow's record first (bounded; not snapshotted).
        self.unpaired_shadows: OrderedDict[str, tuple[str, str, int, float]] = OrderedDict()
        # Live outcomes by the live request id, for a shadow prediction still on its way (bounded;
        # not snapshotted). -> (label, producer)
        self.awaiting_shadow: OrderedDict[str, tuple[int, str]] = OrderedDict()
        # Called with (experiment, variant, model_version, score, label) for each live outcome the
        # statistics count (never a shadow's): the monitor's rolling labelled metrics (performance.py).
        self.on_outcome: Callable[[str, str, int | None, float, int], None] | None = None

    def _variant(self, experiment: str, variant: str) -> VariantStats:
        if (experiment, variant) not in self.stats:
            self.stats[experiment, variant] = VariantStats(**{k: deque(maxlen=SAMPLE) for k in SAMPLED})
        return self.stats[experiment, variant]

    def add_prediction(self, rec: dict) -> bool:
        """Count one prediction record; False if its request_id was seen before."""
        return self.count_prediction(*(rec[c] for c in PREDICTION_FIELDS), key=rec.get("key"))

    def count_prediction(
        self,
        rid: str,
        experiment: str,
        variant: str,
        status: str,
        latency_ms,
        model_version,
        pred_label,
        score,
        key: str | None = None,
    ) -> bool:
        """`add_prediction` on a record's fields (PREDICTION_FIELDS): the rebuild's fast path."""
        if rid in self.predictions:
            return False
        shadow = rid.endswith(SHADOW_SUFFIX)
        s = self._variant(experiment, variant + SHADOW_KEY if shadow else variant)
        marked = latency_ms is not None and latency_ms == latency_ms  # once per request (not NaN)
        if marked:  # a request's wait counts whether or not its variant failed it
            s.requests_reached += 1
            s.latency_ms.append(float(latency_ms))
        if status != OK:
            s.errors += 1
            s.requests_failed += int(marked)
            return True
        s.requests += 1
        s.all_scores.append(float(score))
        if shadow:
            self._pair_shadow(
                rid[: -len(SHADOW_SUFFIX)], (experiment, variant, int(pred_label), float(score))
            )
        elif rid in self.unpaired_shadows:
            self._pair_shadow(rid, self.unpaired_shadows.pop(rid), live=(int(pred_label), float(score)))
        if model_version not in s.model_versions:
            s.model_versions.append(int(model_version))
        self.remember(rid, (experiment, variant, int(pred_label), float(score), key, int(model_version)))
        if rid in self.pending:
            self.add_feedback(rid, *self.pending.pop(rid))
        elif shadow and rid[: -len(SHADOW_SUFFIX)] in self.awaiting_shadow:
            self._count_outcome(rid, *self.awaiting_shadow.pop(rid[: -len(SHADOW_SUFFIX)]))
        return True

    def _pair_shadow(self, live_rid: str, shadow: tuple[str, str, int, float], live=None) -> None:
        """Count a shadow prediction against the live answer to the same request, whichever
        arrived first; one whose live answer has not arrived waits (the oldest dropped)."""
        if live is None:
            known = self.predictions.get(live_rid)
            if known is None:
                self.unpaired_shadows[live_rid] = shadow
                while len(self.unpaired_shadows) > UNPAIRED_SHADOWS:
                    self.unpaired_shadows.popitem(last=False)
                return
            live = (known[2], known[3])
        experiment, variant, label, score = shadow
        add_pair(
            self._variant(experiment, variant + SHADOW_KEY).agreement,
            live_score=live[1],
            live_label=live[0],
            score=score,
            label=label,
        )

    def remember(self, rid: str, prediction: tuple) -> None:
        """Remember a prediction by its request id (the oldest forgotten past `capacity`)."""
        self.predictions[rid] = prediction
        if len(self.predictions) > self.capacity:
            old, _ = self.predictions.popitem(last=False)
            self.labelled.discard(old)

    def knows(self, request_id: str) -> bool:
        """Whether a prediction with this id is remembered (or was labelled)."""
        return request_id in self.predictions or request_id in self.labelled

    def add_feedback(self, request_id: str, label: int, producer: str) -> str:
        """Join an outcome to its prediction: "joined", "duplicate" or "pending"."""
        if request_id in self.labelled:
            return "duplicate"
        if request_id not in self.predictions:
            self.pending[request_id] = (int(label), producer)
            while len(self.pending) > self.pending_capacity:
                self.pending.popitem(last=False)
                self.pending_dropped += 1
            return "pending"
        self._count_outcome(request_id, int(label), producer)
        if not request_id.endswith(SHADOW_SUFFIX):
            self._score_shadow(request_id, int(label), producer)
        return "joined"

    def _score_shadow(self, live_rid: str, label: int, producer: str) -> None:
        """Count a live outcome for the same request's shadow prediction too, now if it is
        remembered, else when it arrives (a shadow copy is scored after the answer is sent)."""
        shadow_rid = live_rid + SHADOW_SUFFIX
        if shadow_rid in self.labelled:
            return
        if shadow_rid in self.predictions:
            self._count_outcome(shadow_rid, label, producer)
            return
        self.awaiting_shadow[live_rid] = (label, producer)
        while len(self.awaiting_shadow) > AWAITING_SHADOW:
            self.awaiting_shadow.popitem(last=False)

    def _count_outcome(self, rid: str, label: int, producer: str) -> None:
        """Count an outcome for a remembered prediction: a shadow one under its shadow variant,
        with a per-key tally of its own (a live one also goes to `on_outcome`)."""
        experiment, variant, pred_label, score, key, version = self.predictions[rid]
        shadow = rid.endswith(SHADOW_SUFFIX)
        counted_as = variant + SHADOW_KEY if shadow else variant
        s = self._variant(experiment, counted_as)
        self.labelled.add(rid)
        # A request without a key is its own key (its request id): one outcome at most, so it
        # never needs the cap, and tallying it would crowd the sticky keys out of the bounded tally.
        live_rid = rid[: -len(SHADOW_SUFFIX)] if shadow else rid
        sticky = None if key == live_rid else key
        if not self._within_key_cap((experiment, counted_as, version, sticky)):
            s.capped[KEY_CAP] = s.capped.get(KEY_CAP, 0) + 1
            return  # logged with its producer; only the statistics leave it out
        s.outcomes += 1
        s.positives += int(label == 1)
        s.correct += int(label == pred_label)
        s.scores.append(score)
        s.labels.append(label)
        s.producers[producer] = s.producers.get(producer, 0) + 1
        s.correct_by_producer[producer] = s.correct_by_producer.get(producer, 0) + int(label == pred_label)
        s.positives_by_producer[producer] = s.positives_by_producer.get(producer, 0) + int(label == 1)
        if not shadow and self.on_outcome is not None:
            self.on_outcome(experiment, variant, version, score, label)

    def _within_key_cap(self, at: tuple) -> bool:
        """Count one more outcome for a client key at a variant's model version, unless it has
        `max_per_key` already (a prediction of unknown key is never capped)."""
        if at[3] is None or self.max_per_key is None:
            return True
        n = self.per_key.pop(at, 0)
        self.per_key[at] = min(n + 1, self.max_per_key + 1)  # the most recent last
        while len(self.per_key) > KEYS:
            self.per_key.popitem(last=False)
        return n < self.max_per_key

    def for_experiment(self, experiment: str) -> dict[str, VariantStats]:
        return {v: s for (e, v), s in self.stats.items() if e == experiment}

    def report(
        self, experiment: ExperimentConfig, *, dropped_records: int = 0, now: float | None = None
    ) -> ExperimentReport:
        """The experiment report for these experiment settings (abtest.py's statistics)."""
        stats = experiment_report(
            self.for_experiment(experiment.name),
            control=experiment.control,
            metric=experiment.metric,
            alpha=experiment.alpha,
            mde=experiment.mde,
            power=experiment.power,
        )
        return ExperimentReport.model_validate(
            {
                **stats,
                "experiment": experiment.name,
                "dropped_records": dropped_records,
                "pending_feedback": len(self.pending),
                "pending_dropped": self.pending_dropped,
                "generated_at": time.time() if now is None else now,
            }
        )

    def recent_p99(self, experiment: str, variant: str, last: int) -> float | None:
        """The p99 latency of a variant's last `last` requests (None before any)."""
        s = self.stats.get((experiment, variant))
        sample = list(s.latency_ms)[-last:] if s is not None and last > 0 else []
        return float(np.percentile(sample, 99)) if sample else None
