"""The ingress replica: A/B routing, batched scoring, shadow, the traffic log, live changes.

A plain class with its collaborators passed in (the control and monitor actors, the feature
client, model deployment handles), so it is unit-tested without HTTP and without Ray; the
routers in `routes/` are its HTTP face and `app.py` makes it a Serve deployment. A variant's
model lives either in this replica (`serve.placement: ingress`, one hop) or in its own
`Model` deployment (`deployment`, for GPU or large models; see `models.py`). The replica
follows the `ServeControl` actor and the registry, and reloads in the background, so
promotions and split changes never fail a request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import numpy as np
import pandas as pd
from ray import serve

from app.config import AppConfig, ExperimentConfig
from app.registry import ledger
from app.registry.registry import CHALLENGER, RegistryError
from app.serving import actors, oip, receipts, scoring
from app.serving.auth import check_admin
from app.serving.models import ModelSet
from app.serving.scoring import RowError

log = logging.getLogger(__name__)
# A prediction reaches the monitor within a second or two (the replicas' shippers), longer
# only while the monitor restarts: feedback (with a genuine receipt) for a prediction the
# monitor does not know yet waits for it when younger than this; older, the monitor has
# forgotten it (past `remembered_predictions`) and the outcome is only recorded in the log.
PENDING_GRACE_S = 120.0


def _freeze_heap() -> None:
    """Keep what is loaded by now (libraries, the first models: millions of objects) out of
    the cyclic garbage collector: the full collections that requests' allocations trigger no
    longer walk them all. The price: if these first models are replaced, their cyclic garbage
    is never collected (once per replica)."""
    gc.collect()
    gc.freeze()


class Ingress:
    def __init__(
        self,
        cfg_data: dict,
        model_handles: dict | None = None,
        admin_token_sha256: str | None = None,
        *,
        control=None,
        monitor=None,
        rollout=None,
        features=None,
        models: ModelSet | None = None,
    ):
        import torch

        from app.monitoring.metrics import ReplicaMetrics
        from app.monitoring.shipper import TrafficShipper

        torch.set_num_threads(1)  # many replicas share few cores; one thread each is fastest
        self.cfg = AppConfig.model_validate(cfg_data)
        self.handles = model_handles or {}
        self.admin_sha = admin_token_sha256
        self.models = models or ModelSet(self.cfg, load=not self.handles)
        self.control = control or actors.control_actor(self.cfg)
        self.monitor = monitor or actors.monitor_actor(self.cfg)
        self._features = features
        self._online_cache = None
        self._feature_registry = None
        self._rollout = rollout
        auth = self.cfg.serve.feedback_auth
        self.feedback_key = receipts.load_key(self.cfg.storage.feedback_key) if auth else None
        self.shipper = TrafficShipper(lambda batch, dropped: self.monitor.ingest.remote(batch, dropped))
        self.metrics = ReplicaMetrics()
        self._background = None
        # The batch size and wait are the config's, set per replica (the decorator's are defaults).
        self._score_batched.set_max_batch_size(self.cfg.serve.max_batch_size)
        self._score_batched.set_batch_wait_timeout_s(self.cfg.serve.batch_wait_timeout_s)
        self._apply_state(actors.resolve(self.control.state.remote()))
        _freeze_heap()

    # ---------------------------------------------------------------- live changes

    @property
    def features(self):
        if self._features is None:
            from app.features.store import FeatureClient

            self._features = FeatureClient(self.cfg)
        return self._features

    @property
    def online_cache(self):
        if self._online_cache is None:
            from app.serving.feature_cache import OnlineFeatureCache

            serve_cfg = self.cfg.serve
            self._feature_registry = self.features.registry_version()  # what the rows are as of
            self._online_cache = OnlineFeatureCache(
                lambda ids: self.features.online_columns(ids),  # whichever client is current
                self.features.spec.names,
                ttl_s=serve_cfg.online_cache_seconds,
                max_entries=serve_cfg.online_cache_entries,
            )
        return self._online_cache

    def _follow_feature_store(self) -> None:
        """A new materialization changes the Feast registry: cached online rows go."""
        if self._online_cache is None:
            return
        version = self.features.registry_version()
        if version != self._feature_registry:
            self._online_cache.clear()
            self._feature_registry = version

    @property
    def experiment(self) -> ExperimentConfig:
        return self.routing.experiment

    def _apply_state(self, state: dict) -> None:
        # One assignment: a batch in flight keeps the routing it started with, so a split
        # and the models behind it can never disagree mid-request.
        self.routing = self.models.apply(state)

    async def _sync(self) -> None:
        """Follow the control actor, and the registry: a retrain job that registers a new
        challenger moves an alias without telling anyone."""
        state = await self.control.state.remote()
        if await asyncio.to_thread(self.models.changed, self.experiment.aliases, state["generation"]):
            await asyncio.to_thread(self._apply_state, state)

    @property
    def rollout(self):
        """The rollout controller (serving/canary.py), created on first use: one per storage root."""
        if self._rollout is None:
            from app.serving.canary import get_rollout

            self._rollout = get_rollout(self.cfg)
        return self._rollout

    def ensure_background(self) -> None:
        if self._background is None:
            self._background = asyncio.get_running_loop().create_task(self._background_loop())
            if self.cfg.rollout.mode == "auto":  # whichever way the app was deployed
                self.rollout.ensure_running.remote()

    async def _background_loop(self) -> None:
        last_sync = 0.0
        while True:
            await asyncio.sleep(0.05)
            self.shipper.pump()
            if time.monotonic() - last_sync >= self.cfg.serve.poll_interval_s:
                last_sync = time.monotonic()
                try:
                    self._follow_feature_store()
                except OSError:  # serve what is cached (at most its TTL old); retry next tick
                    log.exception("could not read the Feast registry's version")
                try:
                    await self._sync()
                except Exception:  # keep serving the models we have; retry next tick
                    log.exception("could not follow the serve control actor")

    async def reconfigure(self, user_config: dict) -> None:
        """`user_config.experiment` from the serve config: declared settings win on deploy."""
        if "experiment" in user_config:
            state = await self.control.declare.remote(user_config["experiment"])
            await asyncio.to_thread(self._apply_state, state)

    # ---------------------------------------------------------------- scoring

    async def predict(self, rows: list, *, batch: bool) -> list:
        """Answers for request rows, or the first row's RowError / exception raised.

        A single row joins the replica's `@serve.batch` queue; a client's own batch
        (`instances`) is already a batch and is scored at once.
        """
        t0 = time.perf_counter()
        results = await self._score_rows(rows) if batch else [await self._score_batched(rows[0])]
        for r in results:
            if isinstance(r, Exception):
                if not isinstance(r, RowError) or r.status >= 500:  # the service's failure
                    self.metrics.failed(getattr(r, "variant", None) or "unknown")
                raise r
        seconds = time.perf_counter() - t0
        for r in results:
            self._log(r, seconds * 1000)
            self.metrics.served(r["variant"], r["model_version"], seconds)
        answers = [scoring.public(r) for r in results]
        key = self.feedback_key
        for a in answers:
            a["feedback_token"] = None if key is None else receipts.issue(key, a["request_id"])
        return answers

    async def _score_rows(self, rows: list) -> list:
        """Score rows (any mix of entity ids and raw features); per row a result or a RowError."""
        self.ensure_background()
        routing = self.routing
        if not routing.split:
            return [RowError(503, "no model is loaded: register a champion (mlsys train)")] * len(rows)
        spec = self.features.spec
        # Inline, not in a thread: a batch's lookup takes about a millisecond, and a thread
        # hop per batch costs more than that in GIL hand-offs (measured).
        cols, errors = scoring.feature_columns(rows, self.cfg, spec, self.online_cache.columns)
        rids, keys, variants = scoring.assign(rows, routing.experiment.name, routing.split)
        ok = np.array([e is None for e in errors])
        scores = np.full(len(rows), np.nan)
        versions = np.zeros(len(rows), dtype=np.int64)
        for variant in set(variants[ok]):
            idx = np.flatnonzero(ok & (variants == variant))
            scores[idx], versions[idx] = await self._score_variant(variant, scoring.take(cols, idx), routing)
        results = scoring.results(
            rids=rids,
            keys=keys,
            variants=variants,
            scores=scores,
            versions=versions,
            errors=errors,
            inputs=scoring.records(cols, spec.names),
            threshold=self.cfg.serve.threshold,
        )
        self._shadow(routing, cols, results)
        return results

    async def _score_variant(
        self, variant: str, data: scoring.Columns | pd.DataFrame, routing
    ) -> tuple[np.ndarray, int]:
        if self.handles:
            version, scores = await self.handles[variant].score.remote(data)
            return np.asarray(scores), version
        predictor = routing.predictors[variant]
        return predictor.score(data), predictor.version

    def _shadow(self, routing, cols: scoring.Columns, results: list) -> None:
        """Score a sampled copy of the rows with the shadow variant; logged, never returned."""
        exp = routing.experiment
        if not exp.shadow or (exp.shadow not in routing.predictors and not self.handles):
            return
        idx = scoring.shadow_indices(exp, results)
        if not idx:
            return

        async def run():
            t0 = time.perf_counter()
            try:
                scores, version = await self._score_variant(exp.shadow, scoring.take(cols, idx), routing)
                status = "ok"
            except Exception:
                log.exception("shadow variant %s failed", exp.shadow)
                scores, version, status = np.full(len(idx), np.nan), 0, "error"
            ms = (time.perf_counter() - t0) * 1000
            shadowed = scoring.shadow_results(
                [results[i] for i in idx],
                variant=exp.shadow,
                version=version,
                scores=scores,
                threshold=self.cfg.serve.threshold,
            )
            for rec in shadowed:
                self._log(rec, ms, shadow=True, status=status)

        asyncio.get_running_loop().create_task(run())

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _score_batched(self, rows: list) -> list:
        try:
            return await self._score_rows(rows)
        except Exception as exc:
            if len(rows) == 1:
                log.exception("scoring failed")
                return [exc]
        # One caller's row must not fail the others batched with it: each row on its own.
        log.warning("a batch of %d rows failed; scoring them one by one", len(rows))
        return [await self._score_alone(row) for row in rows]

    async def _score_alone(self, row) -> object:
        try:
            return (await self._score_rows([row]))[0]
        except Exception as exc:
            log.exception("scoring failed")
            return exc

    def _log(self, result: dict, latency_ms: float, *, shadow: bool = False, status: str = "ok") -> None:
        self.shipper.add(
            scoring.traffic_record(
                result, experiment=self.experiment.name, latency_ms=latency_ms, shadow=shadow, status=status
            )
        )

    # ---------------------------------------------------------------- reads

    def health(self) -> dict:
        self.ensure_background()
        return {
            "status": "ok" if self.routing.split else "no model",
            "models": self.routing.versions,
            "unloadable": self.models.unloadable,
            "generation": self.models.generation,
        }

    def experiment_view(self) -> dict:
        return {
            "experiment": self.experiment.model_dump(),
            "effective_split": self.routing.split,
            "models": self.routing.versions,
            "generation": self.models.generation,
        }

    async def feedback(self, request_id: str, label: int, receipt: str | None = None) -> str:
        """Record an outcome: "joined" (counted in the experiment), "pending" (its prediction is
        on its way to the monitor) or "recorded" (a prediction the monitor no longer remembers:
        kept in the feedback log, where retraining and online learning join it). ReceiptError
        for a missing or forged receipt (403), one older than the traffic log's retention
        (404), or feedback already recorded (409); nothing is stored then."""
        may_wait = True
        if self.feedback_key is not None:
            max_age = self.cfg.monitor.retention_days * 86400
            issued = receipts.verify(self.feedback_key, request_id, receipt, max_age_s=max_age)
            may_wait = time.time() - issued < PENDING_GRACE_S
        self.shipper.pump()  # this replica's predictions reach the monitor first
        status = await actors.within(self.monitor.feedback.remote(request_id, label, may_wait))
        if status == "duplicate":
            raise receipts.ReceiptError(409, "feedback for this request_id was already recorded")
        return status

    async def drift(self) -> dict:
        self.shipper.pump()
        return await actors.within(self.monitor.drift.remote())

    async def experiment_report(self) -> dict:
        self.shipper.pump()
        return await actors.within(self.monitor.report.remote(self.experiment.model_dump()))

    async def rollout_status(self) -> dict:
        return await actors.within(self.rollout.status.remote())

    # ---------------------------------------------------------------- admin

    def check_admin(self, authorization: str | None) -> None:
        """AdminError unless the call may change the experiment or the models."""
        check_admin(authorization, required=self.cfg.serve.admin_auth, token_sha256=self.admin_sha)

    async def set_experiment(self, experiment: ExperimentConfig) -> dict:
        state = await self.control.set_experiment.remote(experiment.model_dump())
        await asyncio.to_thread(self._apply_state, state)
        return self.experiment_view()

    async def promote(self, version: int | None) -> dict:
        """Make `version` (default: the challenger) the champion; RegistryError names what is missing."""
        if version is None:
            version = await asyncio.to_thread(self.models.registry.alias_version, CHALLENGER)
        if version is None:
            raise RegistryError('no challenger to promote; pass {"version": N}')
        await asyncio.to_thread(self.models.registry.promote, version, by=ledger.ADMIN_ROUTE)
        return await self._after_alias_change()

    async def rollback(self) -> dict:
        await asyncio.to_thread(self.models.registry.rollback, by=ledger.ADMIN_ROUTE)
        return await self._after_alias_change()

    async def _after_alias_change(self) -> dict:
        state = await self.control.bump.remote()
        await asyncio.to_thread(self._apply_state, state)
        return {"models": self.routing.versions, "generation": self.models.generation}

    # ---------------------------------------------------------------- Open Inference Protocol v2

    async def v2_infer(self, name: str, body: oip.InferRequest) -> dict:
        """Score v2 tensors with the control variant (oip.OipError for tensors that do not fit)."""
        t0 = time.perf_counter()
        raw = oip.request_rows(body, self.cfg)
        routing = self.routing
        control = routing.experiment.control
        frame = scoring.raw_rows_to_frame(raw, self.cfg)
        try:
            scores, version = await self._score_variant(control, frame, routing)
        except Exception:
            self.metrics.failed(control)
            raise
        n = len(raw)
        rids = [scoring.new_request_id() for _ in range(n)]
        results = scoring.results(
            rids=rids,
            keys=rids,
            variants=np.full(n, control, dtype=object),
            scores=scores,
            versions=np.full(n, version),
            errors=[None] * n,
            inputs=scoring.records(frame, self.features.spec.names),
            threshold=self.cfg.serve.threshold,
        )
        unscored = next((r for r in results if isinstance(r, RowError)), None)
        if unscored is not None:
            raise oip.OipError(str(unscored))
        latency_ms = (time.perf_counter() - t0) * 1000
        for r in results:
            self._log(r, latency_ms)
        return oip.response(body, name, version, [r["score"] for r in results], [r["label"] for r in results])
