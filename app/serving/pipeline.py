"""The scoring pipeline: typed rows in, answers or row errors out, every outcome a traffic record.

One path for `/predict` and the Open Inference Protocol: feature columns (online store or
raw features), assignment to a variant, scoring where the variant's model is placed, the
shadow copy, and the records the monitor counts. A model that raises fails only the rows it
raised on (the rest of the batch is answered) and counts as its variant's error, both in the
replica's metrics and in the traffic log, where the rollout's error guardrail reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from app.config import AppConfig
from app.monitoring.records import TrafficRecord
from app.serving import scoring
from app.serving.feature_cache import OnlineFeatures
from app.serving.placement import InReplica, ModelDeployments
from app.serving.routing import LiveRouting, Routing
from app.serving.scoring import Answer, Columns, RowError, ScoreRow, ScoringFailed

log = logging.getLogger(__name__)
NO_MODEL = "no model is loaded: register a champion (mlsys train)"


class ScoringPipeline:
    def __init__(
        self,
        cfg: AppConfig,
        *,
        routing: LiveRouting,
        placement: InReplica | ModelDeployments,
        features: OnlineFeatures,
        emit: Callable[[TrafficRecord], None],
        metrics,
    ):
        self.cfg = cfg
        self.routing = routing
        self.placement = placement
        self.features = features
        self.emit = emit
        self.metrics = metrics
        self._shadows: set[asyncio.Task] = set()  # held until done (the loop keeps weak refs)

    async def score(self, rows: list[ScoreRow]) -> list[Answer | RowError]:
        """Per row its answer or the RowError that stops it (a ScoringFailed when its model raised)."""
        routing = self.routing.current  # one routing for the whole batch
        if not routing.split:
            return [RowError(503, NO_MODEL)] * len(rows)
        spec = self.features.spec
        # Inline, not in a thread: a batch's lookup takes about a millisecond, and a thread
        # hop per batch costs more than that in GIL hand-offs (measured).
        cols, errors = scoring.feature_columns(rows, self.cfg, spec, self.features.columns)
        rids, keys, variants = scoring.assign(rows, routing.experiment.name, routing.split)
        ok = np.array([e is None for e in errors])
        scores, versions = np.full(len(rows), np.nan), np.zeros(len(rows), dtype=np.int64)
        for variant in set(variants[ok]):
            idx = np.flatnonzero(ok & (variants == variant))
            await self._score_variant(variant, idx, cols, routing, scores, versions, errors)
        out = scoring.answers(
            rids=rids,
            keys=keys,
            variants=variants,
            scores=scores,
            versions=versions,
            errors=errors,
            inputs=scoring.records(cols, spec.names),
            threshold=self.cfg.serve.threshold,
            by_entity=[row.entity_id is not None for row in rows],
        )
        self._record(rows, out, rids=rids, keys=keys, variants=variants, experiment=routing.experiment.name)
        self._shadow(routing, cols, out)
        if any(row.explain for row in rows):
            out = await self._explain(rows, out, cols, routing)
        return out

    async def _explain(self, rows: list[ScoreRow], out: list, cols: Columns, routing: Routing) -> list:
        """The answers of rows that asked for it, with each feature's contribution to their score
        (by the variant that answered). An explanation that fails leaves its answer standing."""
        asked: dict[str, list[int]] = {}
        for i, (row, result) in enumerate(zip(rows, out, strict=True)):
            if row.explain and isinstance(result, Answer):
                asked.setdefault(result.variant, []).append(i)
        out = list(out)
        for variant, idx in asked.items():
            try:
                explained = await self.placement.explain(variant, scoring.take(cols, np.array(idx)), routing)
            except Exception:
                log.exception("variant %s failed to explain %d rows", variant, len(idx))
                continue
            for i, explanation in zip(idx, explained, strict=True):
                out[i] = replace(out[i], explanation=explanation)
        return out

    async def _score_variant(self, variant, idx, cols, routing, scores, versions, errors) -> None:
        """Fill `scores`/`versions` at `idx`; rows the model raised on get a ScoringFailed."""
        try:
            scores[idx], versions[idx] = await self.placement.score(variant, scoring.take(cols, idx), routing)
            return
        except Exception as exc:
            if len(idx) == 1:
                log.exception("variant %s failed to score a row", variant)
                errors[idx[0]] = ScoringFailed(variant, exc)
                return
        # One row must not fail the others: each on its own finds the ones the model refuses.
        log.warning("variant %s failed on a batch of %d rows; scoring them one by one", variant, len(idx))
        for i in idx:
            await self._score_variant(variant, np.array([i]), cols, routing, scores, versions, errors)

    def _record(self, rows, out, *, rids, keys, variants, experiment: str) -> None:
        """Metrics and traffic records: an answer is served; a 5xx is its variant's error in the
        metrics (what its users saw), and only a model's own failure is an error record (what
        the experiment holds against the variant: an online-store outage is not its fault)."""
        now, timed = time.perf_counter(), set()
        marked = _request_marks(rows, out)
        for i, (row, result, rid, key, variant) in enumerate(
            zip(rows, out, rids, keys, variants, strict=True)
        ):
            # A request's latency counts once per variant that answered it in the metrics (a
            # request's rows share its arrival time), however many rows it holds.
            recorded = isinstance(result, (Answer, ScoringFailed))
            first = recorded and (row.received, variant) not in timed
            if first:
                timed.add((row.received, variant))
            seconds = now - row.received if first else None
            # In the traffic log one row per (request, variant) carries the latency: the
            # request's first failed row if the variant failed any, else its first answer. It is
            # the request's time per row it held for that variant: a client's batch takes longer
            # the more rows it sends, and a caller must not make a variant look slow that way.
            latency_ms = (now - row.received) * 1000 / marked[i] if i in marked else None
            if isinstance(result, Answer):
                self.metrics.served(result.variant, result.model_version, seconds)
                self.emit(result.record(experiment, latency_ms))
                continue
            if result.status >= 500:
                self.metrics.failed(str(variant))
            if isinstance(result, ScoringFailed):
                self.emit(
                    scoring.failure_record(
                        request_id=rid,
                        experiment=experiment,
                        variant=result.variant,
                        key=str(key),
                        latency_ms=latency_ms,
                    )
                )

    def _shadow(self, routing: Routing, cols: Columns, out: list) -> None:
        """Score a sampled copy of the answered rows with the shadow variant; logged, never returned."""
        exp = routing.experiment
        if not exp.shadow or not self.placement.has(exp.shadow, routing):
            return
        idx = scoring.shadow_indices(exp, out)
        if idx:
            shadow = self._run_shadow(routing, scoring.take(cols, idx), [out[i] for i in idx])
            task = asyncio.get_running_loop().create_task(shadow)
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)

    async def _run_shadow(self, routing: Routing, cols: Columns, answered: list[Answer]) -> None:
        exp, threshold = routing.experiment, self.cfg.serve.threshold
        t0 = time.perf_counter()
        try:
            scores, version = await self.placement.score(exp.shadow, cols, routing)
        except Exception:
            log.exception("shadow variant %s failed", exp.shadow)
            scores, version = None, 0
        ms = (time.perf_counter() - t0) * 1000
        for i, live in enumerate(answered):
            latency_ms = ms if i == 0 else None  # one shadow call, one latency
            if scores is None:
                self.emit(
                    scoring.failure_record(
                        request_id=live.request_id,
                        experiment=exp.name,
                        variant=exp.shadow,
                        key=live.key,
                        latency_ms=latency_ms,
                        shadow=True,
                    )
                )
                continue
            copy = Answer(
                request_id=live.request_id,
                variant=exp.shadow,
                model_version=int(version),
                score=float(scores[i]),
                label=int(scores[i] >= threshold),
                key=live.key,
                features=live.features,
                by_entity=live.by_entity,
            )
            self.emit(copy.record(exp.name, latency_ms, shadow=True))


def _request_marks(rows, out) -> dict[int, int]:
    """The row of each (request, variant) that carries the request's latency in the traffic log,
    with the number of that request's rows the variant scored: its first failed row when the
    variant failed any (the request counts once as that variant's failure), else its first
    answer - so errors count per request, not per row."""
    marks: dict[tuple, tuple[int, bool]] = {}
    rows_of: dict[tuple, int] = {}
    for i, (row, result) in enumerate(zip(rows, out, strict=True)):
        if not isinstance(result, (Answer, ScoringFailed)):
            continue
        at = (row.received, result.variant)
        rows_of[at] = rows_of.get(at, 0) + 1
        failed = isinstance(result, ScoringFailed)
        if at not in marks or (failed and not marks[at][1]):
            marks[at] = (i, failed)
    return {i: rows_of[at] for at, (i, _) in marks.items()}
