"""The ingress replica: the Serve shell around the scoring pipeline and the services.

It wires the collaborators (the control and monitor actors, the online features, where the
models run), queues single rows into Serve's batches, follows the control state in the
background and ships traffic records to the monitor. Scoring is `pipeline.py`'s; reads,
outcomes and admin are `services.py`'s; the routers in `routes/` are the HTTP face and
`app.py` makes this class a Serve deployment. Collaborators can be passed in, so it is
unit-tested without HTTP and without Ray.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from ray import serve

from app.config import AppConfig, ExperimentConfig
from app.serving import actors, oip
from app.serving.feature_cache import OnlineFeatures
from app.serving.model_set import ModelSet
from app.serving.oip_grpc import OipGrpcMethods
from app.serving.pipeline import ScoringPipeline
from app.serving.placement import placement_for
from app.serving.routing import LiveRouting
from app.serving.scoring import Answer, RowError, ScoreRow, new_request_id
from app.serving.services import Admin, Outcomes, Reads

log = logging.getLogger(__name__)
MAX_KEY_CHARS = 256  # as /predict's `key`


def _freeze_heap() -> None:
    """Keep what is loaded by now (libraries, the first models: millions of objects) out of
    the cyclic garbage collector: the full collections that requests' allocations trigger no
    longer walk them all. The price: if these first models are replaced, their cyclic garbage
    is never collected (once per replica)."""
    gc.collect()
    gc.freeze()


class Ingress(OipGrpcMethods):
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
        placement = placement_for(model_handles)
        control = control or actors.control_actor(self.cfg)
        monitor = monitor or actors.monitor_actor(self.cfg)
        self._rollout = rollout
        self.routing = LiveRouting(models or ModelSet(self.cfg, load=placement.loads_models), control)
        self.features = OnlineFeatures(self.cfg, client=features)
        self.shipper = TrafficShipper(lambda batch, dropped: monitor.ingest.remote(batch, dropped))
        self.pipeline = ScoringPipeline(
            self.cfg,
            routing=self.routing,
            placement=placement,
            features=self.features,
            emit=self.shipper.add,
            metrics=ReplicaMetrics(),
        )
        self.reads = Reads(self.routing, monitor, self.shipper, rollout=lambda: self.rollout)
        self.outcomes = Outcomes(self.cfg, monitor, self.shipper)
        self.admin = Admin(self.cfg, self.routing, admin_token_sha256)
        self._background = None
        # The batch size and wait are the config's, set per replica (the decorator's are defaults).
        self._score_batched.set_max_batch_size(self.cfg.serve.max_batch_size)
        self._score_batched.set_batch_wait_timeout_s(self.cfg.serve.batch_wait_timeout_s)
        self.routing.apply(actors.resolve(control.state.remote()))
        _freeze_heap()

    @property
    def rollout(self):
        """The rollout controller (rollout_controller.py), created on first use: one per storage root."""
        if self._rollout is None:
            from app.serving.rollout_controller import get_rollout

            self._rollout = get_rollout(self.cfg)
        return self._rollout

    # ---------------------------------------------------------------- following the control state

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
                await self.follow()

    async def follow(self) -> None:
        """One step of following: the Feast registry (fresh online rows) and the control actor."""
        try:
            await self.features.follow_registry()
        except Exception:  # serve what is cached (at most its TTL old); retry next tick
            log.exception("could not read the Feast registry's version")
        try:
            await self.routing.sync()
        except Exception:  # keep serving the models we have; retry next tick
            log.exception("could not follow the serve control actor")

    async def reconfigure(self, user_config: dict) -> None:
        """`user_config.experiment` from the serve config: declared settings win on deploy."""
        if "experiment" in user_config:
            declared = ExperimentConfig.model_validate(user_config["experiment"])
            state = await self.routing.control.declare.remote(declared)
            await self.routing.apply_async(state)

    # ---------------------------------------------------------------- scoring

    async def predict(self, rows: list[ScoreRow], *, batch: bool) -> list[dict]:
        """The public answers for request rows; the first row's RowError is raised.

        A single row joins the replica's `@serve.batch` queue; a client's own batch
        (`instances`) is already a batch and is scored at once."""
        self.ensure_background()
        results = await self._score(rows) if batch else [await self._score_batched(rows[0])]
        answers = _answers_or_raise(results)
        return [a.public(self.outcomes.receipt(a.request_id)) for a in answers]

    async def _score(self, rows: list[ScoreRow]) -> list[Answer | RowError]:
        """The pipeline's results; a fault outside any model (a model's own fails only its rows)
        is a 500 for these rows, never an unhandled error in the replica."""
        try:
            return await self.pipeline.score(rows)
        except Exception:
            log.exception("scoring failed")
            return [RowError(500, "the service could not score this row")] * len(rows)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _score_batched(self, rows: list[ScoreRow]) -> list[Answer | RowError]:
        if len(rows) == 1:
            return await self._score(rows)
        try:
            return await self.pipeline.score(rows)
        except Exception:
            # One caller's row must not fail the others batched with it: each row on its own.
            log.warning("a batch of %d rows failed; scoring them one by one", len(rows))
            return [(await self._score([row]))[0] for row in rows]

    def v2_version(self, name: str) -> int:
        """The control variant's version behind the v2 model `name` (oip.ModelNotServed otherwise)."""
        current = self.routing.current
        return oip.control_version(self.cfg, name, current.versions, current.experiment.control)

    async def v2_infer(self, name: str, body: oip.InferRequest) -> dict:
        """Score v2 tensors through the same pipeline as /predict: the rows of one request share
        one assignment (so one model version answers), keyed by `parameters.key` when the
        client sends one. oip.OipError for tensors that do not fit; RowError for a 5xx."""
        key = (body.parameters or {}).get("key", new_request_id())
        if isinstance(key, bool) or not isinstance(key, (str, int)) or len(str(key)) > MAX_KEY_CHARS:
            raise oip.OipError(f"parameters.key: a string or integer of at most {MAX_KEY_CHARS} characters")
        received, explain = time.perf_counter(), oip.wants_explanation(body)
        rows = [ScoreRow(None, raw, key, received, explain) for raw in oip.request_rows(body, self.cfg)]
        if explain:
            oip.check_explain_rows(len(rows), self.cfg)
        self.ensure_background()
        results = await self._score(rows) if len(rows) > 1 else [await self._score_batched(rows[0])]
        try:
            answers = _answers_or_raise(results)
        except RowError as exc:
            if exc.status >= 500:
                raise
            raise oip.OipError(str(exc)) from None
        version = answers[0].model_version
        explained = [a.explanation for a in answers]
        if explain and any(e is None for e in explained):  # never a 200 without what was asked
            raise RowError(500, "the model could not explain these rows")
        scores, labels = [a.score for a in answers], [a.label for a in answers]
        return oip.response(body, name, version, scores, labels, explained if explain else None)


def _answers_or_raise(results: list[Answer | RowError]) -> list[Answer]:
    for r in results:
        if isinstance(r, RowError):
            raise r
    return results
