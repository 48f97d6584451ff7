"""The FastAPI ingress deployment: A/B routing, feedback, admin, OIP v2.

The ingress assigns each request a variant by a stable hash, fetches entity features from
the online store, and scores rows with `@serve.batch` so concurrent requests share one
feature lookup and one forward pass. A variant's model lives either in the ingress replica
(`serve.placement: ingress`, one hop) or in its own `Model` deployment (`deployment`, for GPU
or large models; see `models.py`). Replicas follow the `ServeControl` actor for live changes and reload in the
background, so promotions and split changes never fail a request.

No `from __future__ import annotations` here: FastAPI reads the route annotations, which
refer to request models built from the config at run time.
"""

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import ray
from fastapi import FastAPI, Header, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve

from app.config import AppConfig, ExperimentConfig
from app.registry.registry import CHALLENGER, RegistryError
from app.serving import oip
from app.serving.experiment import choose_variant, effective_split, in_shadow_sample
from app.serving.http import BodySizeLimit, validation_error_response
from app.serving.models import ModelSet
from app.serving.predictor import raw_rows_to_frame
from app.serving.schemas import Feedback, FeedbackAck, Prediction, PredictionBatch, Promotion, request_models

log = logging.getLogger(__name__)


class RowError(Exception):
    """A row that cannot be scored for a reason the client can fix (HTTP status + message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Routing:
    """What one request is routed with: the experiment, its effective split, the models."""

    experiment: ExperimentConfig
    split: dict
    versions: dict
    predictors: dict


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ingress_deployment(cfg: AppConfig):
    """The ingress deployment class for this config (its request models come from the dataset)."""
    models = request_models(cfg)
    PredictRequest = models.PredictRequest
    api = FastAPI(
        title="mlsys",
        description="Predictions with an A/B experiment; see /docs. Admin routes need a Bearer token.",
    )
    api.add_middleware(BodySizeLimit, max_bytes=cfg.serve.max_body_bytes)
    api.add_exception_handler(RequestValidationError, validation_error_response)

    @api.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @serve.deployment(
        name="ingress",
        max_ongoing_requests=256,
        autoscaling_config=cfg.serve.ingress.model_dump(),
        ray_actor_options={"num_cpus": 1},
        health_check_period_s=5,
        # Requests are in the traffic log and the metrics; an access-log line each would only
        # add log volume (no throughput change measured either way).
        logging_config={"enable_access_log": False},
    )
    @serve.ingress(api)
    class Ingress:
        def __init__(self, cfg_data: dict, model_handles: dict, admin_token_sha256):
            import torch

            from app.monitoring.metrics import ReplicaMetrics
            from app.monitoring.monitor import get_monitor
            from app.monitoring.shipper import TrafficShipper
            from app.serving.control import get_control

            torch.set_num_threads(1)  # many replicas share few cores; one thread each is fastest
            self.cfg = AppConfig.model_validate(cfg_data)
            self.handles = model_handles or {}
            self.admin_sha = admin_token_sha256
            self.models = ModelSet(self.cfg, load=not self.handles)
            self.control = get_control(self.cfg)
            self.monitor = get_monitor(self.cfg)
            self.shipper = TrafficShipper(lambda batch, dropped: self.monitor.ingest.remote(batch, dropped))
            self.metrics = ReplicaMetrics()
            self._features = None
            self._background = None
            self._apply_state(ray.get(self.control.state.remote()))

        # ------------------------------------------------------------ live changes

        @property
        def features(self):
            if self._features is None:
                from app.features.store import FeatureClient

                self._features = FeatureClient(self.cfg)
            return self._features

        @property
        def experiment(self) -> ExperimentConfig:
            return self.routing.experiment

        def _apply_state(self, state: dict) -> None:
            exp = ExperimentConfig.model_validate(state["experiment"])
            self.models.refresh(exp.aliases, state["generation"])
            # One assignment: a batch in flight keeps the routing it started with, so a split
            # and the models behind it can never disagree mid-request.
            self.routing = Routing(
                exp,
                effective_split(exp.split, set(self.models.versions)),
                self.models.versions,
                self.models.predictors,
            )

        async def _sync(self) -> None:
            """Follow the control actor, and the registry: a retrain job that registers a new
            challenger moves an alias without telling anyone."""
            state = await self.control.state.remote()
            if await asyncio.to_thread(self.models.changed, self.experiment.aliases, state["generation"]):
                await asyncio.to_thread(self._apply_state, state)

        def _ensure_background(self) -> None:
            if self._background is None:
                self._background = asyncio.get_running_loop().create_task(self._background_loop())

        async def _background_loop(self) -> None:
            last_sync = 0.0
            while True:
                await asyncio.sleep(0.05)
                self.shipper.pump()
                if time.monotonic() - last_sync >= self.cfg.serve.poll_interval_s:
                    last_sync = time.monotonic()
                    try:
                        await self._sync()
                    except Exception:  # keep serving the models we have; retry next tick
                        log.exception("could not follow the serve control actor")

        async def reconfigure(self, user_config: dict) -> None:
            """`user_config.experiment` from the serve config: declared settings win on deploy."""
            if "experiment" in user_config:
                state = await self.control.declare.remote(user_config["experiment"])
                await asyncio.to_thread(self._apply_state, state)

        # ------------------------------------------------------------ scoring

        def _frames(self, rows: list) -> tuple[pd.DataFrame, list]:
            """Model-feature frame for the rows; per row None or the RowError that stops it."""
            errors: list = [None] * len(rows)
            entity_idx = [i for i, r in enumerate(rows) if r.entity_id is not None]
            raw_idx = [i for i, r in enumerate(rows) if r.features is not None]
            parts = []
            if entity_idx:
                found = self.features.online([rows[i].entity_id for i in entity_idx])
                names = [n for n in self.features.spec.names]
                online = pd.DataFrame.from_records(found, columns=names)
                online.index = entity_idx
                unknown = online[names].isna().all(axis=1)
                if self.cfg.serve.unknown_entity == "error":
                    for i in online.index[unknown]:
                        errors[i] = RowError(
                            404, f"entity_id {rows[i].entity_id!r}: no features in the online store"
                        )
                parts.append(online)
            if raw_idx:
                raw = raw_rows_to_frame([rows[i].features.model_dump() for i in raw_idx], self.cfg)
                raw.index = raw_idx
                parts.append(raw)
            frame = pd.concat(parts).sort_index() if len(parts) > 1 else parts[0]
            return frame, errors

        async def _score_rows(self, rows: list) -> list:
            """Score rows (any mix of entity ids and raw features); per row a result or a RowError."""
            self._ensure_background()
            routing = self.routing
            split, exp = routing.split, routing.experiment
            if not split:
                return [RowError(503, "no model is loaded: register a champion (mlsys train)")] * len(rows)
            # Inline, not in a thread: a batch's lookup takes well under a millisecond, and a
            # thread hop per batch costs more than that in GIL hand-offs (measured).
            frame, errors = self._frames(rows)
            rids = [uuid.uuid4().hex for _ in rows]
            keys = [
                r.entity_id if r.entity_id is not None else (r.key if r.key is not None else rid)
                for r, rid in zip(rows, rids, strict=True)
            ]
            variants = np.array([choose_variant(exp.name, k, split) for k in keys], dtype=object)
            ok = np.array([e is None for e in errors])
            scores = np.full(len(rows), np.nan)
            versions = np.zeros(len(rows), dtype=np.int64)
            for variant in set(variants[ok]):
                idx = np.flatnonzero(ok & (variants == variant))
                scores[idx], versions[idx] = await self._score_variant(variant, frame.iloc[idx], routing)
            results = []
            threshold = self.cfg.serve.threshold
            inputs = frame[self.features.spec.names].to_dict("records")
            for i in range(len(rows)):
                if errors[i] is not None:
                    results.append(errors[i])
                    continue
                results.append(
                    {
                        "request_id": rids[i],
                        "variant": variants[i],
                        "model_version": int(versions[i]),
                        "score": float(scores[i]),
                        "label": int(scores[i] >= threshold),
                        "key": str(keys[i]),
                        "features": inputs[i],
                    }
                )
            self._shadow(routing, frame, results)
            return results

        async def _score_variant(self, variant: str, frame: pd.DataFrame, routing) -> tuple[np.ndarray, int]:
            if self.handles:
                version, scores = await self.handles[variant].score.remote(frame.to_dict("records"))
                return np.asarray(scores), version
            predictor = routing.predictors[variant]
            return predictor.score(frame), predictor.version

        def _shadow(self, routing, frame: pd.DataFrame, results: list) -> None:
            """Score a sampled copy of the rows with the shadow variant; logged, never returned."""
            exp = routing.experiment
            if not exp.shadow or (exp.shadow not in routing.predictors and not self.handles):
                return
            idx = [
                i
                for i, r in enumerate(results)
                if isinstance(r, dict) and in_shadow_sample(exp.name, r["request_id"], exp.shadow_fraction)
            ]
            if not idx:
                return

            async def run():
                t0 = time.perf_counter()
                try:
                    scores, version = await self._score_variant(exp.shadow, frame.iloc[idx], routing)
                    status = "ok"
                except Exception:
                    log.exception("shadow variant %s failed", exp.shadow)
                    scores, version, status = np.full(len(idx), np.nan), 0, "error"
                ms = (time.perf_counter() - t0) * 1000
                for j, i in enumerate(idx):
                    rec = {
                        **results[i],
                        "variant": exp.shadow,
                        "model_version": int(version),
                        "score": float(scores[j]),
                        "label": int(scores[j] >= self.cfg.serve.threshold),
                    }
                    self._log(rec, ms, shadow=True, status=status)

            asyncio.get_running_loop().create_task(run())

        @serve.batch(
            max_batch_size=cfg.serve.max_batch_size, batch_wait_timeout_s=cfg.serve.batch_wait_timeout_s
        )
        async def _score_batched(self, rows: list) -> list:
            try:
                return await self._score_rows(rows)
            except Exception as exc:  # one bad batch must not take the others' answers with it
                log.exception("scoring failed")
                return [exc] * len(rows)

        def _log(self, result: dict, latency_ms: float, *, shadow: bool = False, status: str = "ok") -> None:
            rec = {
                "request_id": result["request_id"] + ("-shadow" if shadow else ""),
                "logged_at": pd.Timestamp.now(tz="UTC"),
                "experiment": self.experiment.name,
                "variant": result["variant"],
                "model_version": result["model_version"],
                "shadow": shadow,
                "pred_score": result["score"],
                "pred_label": result["label"],
                "latency_ms": latency_ms,
                "status": status,
                "key": result["key"],
            }
            for name, value in result["features"].items():
                rec[name] = None if value is None or (isinstance(value, float) and np.isnan(value)) else value
            self.shipper.add(rec)

        # ------------------------------------------------------------ routes

        @api.get("/healthz")
        async def healthz(self) -> dict:
            self._ensure_background()
            return {
                "status": "ok" if self.routing.split else "no model",
                "models": self.routing.versions,
                "generation": self.models.generation,
            }

        @api.post("/predict", response_model=Prediction | PredictionBatch)
        async def predict(self, body: PredictRequest):
            t0 = time.perf_counter()
            rows = body.rows()
            if body.instances is None:
                results = [await self._score_batched(rows[0])]
            else:
                results = await self._score_rows(rows)
            for r in results:
                if isinstance(r, RowError):
                    field = "entity_id" if r.status == 404 else None
                    raise HTTPException(r.status, {"error": str(r), "field": field})
                if isinstance(r, Exception):
                    self.metrics.failed("unknown")
                    raise r
            seconds = time.perf_counter() - t0
            for r in results:
                self._log(r, seconds * 1000)
                self.metrics.served(r["variant"], r["model_version"], seconds)
            out = [
                {k: r[k] for k in ("request_id", "variant", "model_version", "score", "label")}
                for r in results
            ]
            return out[0] if body.instances is None else {"predictions": out}

        @api.post("/feedback", response_model=FeedbackAck)
        async def feedback(self, body: Feedback):
            self.shipper.pump()  # this replica's predictions reach the monitor first
            status = await self.monitor.feedback.remote(body.request_id, body.label)
            return {"request_id": body.request_id, "status": status}

        @api.get("/monitor/drift")
        async def monitor_drift(self) -> dict:
            """Per-feature PSI / KS / chi-square of the last window, alert state, retrain decisions."""
            self.shipper.pump()
            return await self.monitor.drift.remote()

        @api.get("/report", response_class=HTMLResponse)
        async def html_report(self):
            """The drift and experiment report as a self-contained HTML page."""
            from app.monitoring import report

            self.shipper.pump()
            drift = await self.monitor.drift.remote()
            experiment = await self.monitor.report.remote(self.experiment.model_dump())
            return HTMLResponse(await asyncio.to_thread(report.render, drift, experiment))

        @api.get("/experiment")
        async def get_experiment(self) -> dict:
            return {
                "experiment": self.experiment.model_dump(),
                "effective_split": self.routing.split,
                "models": self.routing.versions,
                "generation": self.models.generation,
            }

        @api.get("/experiment/report")
        async def experiment_report(self) -> dict:
            self.shipper.pump()
            return await self.monitor.report.remote(self.experiment.model_dump())

        def _admin(self, authorization: str | None = Header(None)) -> None:
            if not self.cfg.serve.admin_auth:
                return
            if not self.admin_sha:
                raise HTTPException(
                    403, "admin routes are disabled: set MLSYS_ADMIN_TOKEN before starting the service"
                )
            if not authorization or not authorization.startswith("Bearer "):
                raise HTTPException(
                    401,
                    "admin route: send Authorization: Bearer <MLSYS_ADMIN_TOKEN>",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not hmac.compare_digest(token_digest(authorization.removeprefix("Bearer ")), self.admin_sha):
                raise HTTPException(403, "admin route: wrong token")

        @api.put("/experiment")
        async def put_experiment(
            self, body: ExperimentConfig, authorization: str | None = Header(None)
        ) -> dict:
            self._admin(authorization)
            state = await self.control.set_experiment.remote(body.model_dump())
            await asyncio.to_thread(self._apply_state, state)
            return await self.get_experiment()

        @api.post("/admin/promote")
        async def promote(
            self, body: Promotion | None = None, authorization: str | None = Header(None)
        ) -> dict:
            self._admin(authorization)
            version = (
                body.version
                if body and body.version is not None
                else self.models.registry.alias_version(CHALLENGER)
            )
            if version is None:
                raise HTTPException(
                    409, {"error": 'no challenger to promote; pass {"version": N}', "field": "version"}
                )
            try:
                await asyncio.to_thread(self.models.registry.promote, version)
            except RegistryError as exc:
                raise HTTPException(404, {"error": str(exc), "field": "version"}) from None
            return await self._after_alias_change()

        @api.post("/admin/rollback")
        async def rollback(self, authorization: str | None = Header(None)) -> dict:
            self._admin(authorization)
            try:
                await asyncio.to_thread(self.models.registry.rollback)
            except RegistryError as exc:
                raise HTTPException(409, str(exc)) from None
            return await self._after_alias_change()

        async def _after_alias_change(self) -> dict:
            state = await self.control.bump.remote()
            await asyncio.to_thread(self._apply_state, state)
            return {"models": self.routing.versions, "generation": self.models.generation}

        # ------------------------------------------------------------ Open Inference Protocol v2

        @api.get("/v2/health/live")
        async def v2_live(self) -> dict:
            return {"live": True}

        @api.get("/v2/health/ready")
        async def v2_ready(self):
            ready = self.experiment.control in self.routing.versions
            return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

        def _v2_model(self, name: str) -> int:
            if name != self.cfg.registry.model_name:
                raise HTTPException(
                    404, f"model {name!r} not found (this server has {self.cfg.registry.model_name!r})"
                )
            version = self.routing.versions.get(self.experiment.control)
            if version is None:
                raise HTTPException(503, f"model {name!r} has no {self.experiment.control} version loaded")
            return version

        @api.get("/v2/models/{name}")
        async def v2_metadata(self, name: str) -> dict:
            return oip.model_metadata(self.cfg, name, [self._v2_model(name)])

        @api.get("/v2/models/{name}/ready")
        async def v2_model_ready(self, name: str) -> dict:
            self._v2_model(name)
            return {"name": name, "ready": True}

        @api.post("/v2/models/{name}/infer")
        async def v2_infer(self, name: str, body: oip.InferRequest) -> dict:
            t0 = time.perf_counter()
            self._v2_model(name)  # 404 / 503 before any work
            try:
                raw = oip.request_rows(body, self.cfg)
            except oip.OipError as exc:
                raise HTTPException(400, str(exc)) from None
            routing = self.routing
            control = routing.experiment.control
            frame = raw_rows_to_frame(raw, self.cfg)
            scores, version = await self._score_variant(control, frame, routing)
            labels = (scores >= self.cfg.serve.threshold).astype(int).tolist()
            latency_ms = (time.perf_counter() - t0) * 1000
            inputs = frame[self.features.spec.names].to_dict("records")
            for i in range(len(raw)):
                rid = uuid.uuid4().hex
                result = {
                    "request_id": rid,
                    "variant": control,
                    "model_version": int(version),
                    "score": float(scores[i]),
                    "label": labels[i],
                    "key": rid,
                    "features": inputs[i],
                }
                self._log(result, latency_ms)
            return oip.response(body, name, version, [float(s) for s in scores], labels)

    return Ingress
