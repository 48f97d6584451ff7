"""The Serve application: `build_app(args)` is the import path of `serve deploy` and `mlsys serve`.

    serve deploy deployments/serve_config.yaml      # import_path: app.serving.app:build_app

The admin token is read from MLSYS_ADMIN_TOKEN where the app is built (or given as its digest
in the Serve config's `args`) and handed to the ingress only as a SHA-256 digest; the token is
taken out of the environment before Ray starts, so no Ray process, job or dashboard sees it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from app.cluster.console import verbose_console
from app.cluster.credentials import ADMIN_TOKEN_ENV, secret
from app.config import AppConfig, load_config

APP_NAME = "mlsys"
TOKEN_ENV = ADMIN_TOKEN_ENV


class ServeArgs(BaseModel):
    """Arguments of `build_app` (the `args:` of an application in a Serve config)."""

    model_config = ConfigDict(extra="forbid")
    config: str | None = None  # the mlsys config file; default MLSYS_CONFIG or the local config
    # The admin token's SHA-256 (`printf %s "$MLSYS_ADMIN_TOKEN" | sha256sum`): how `serve deploy`
    # turns admin routes on without the token entering the cluster.
    admin_token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


def ingress_deployment(cfg: AppConfig):
    """The `Ingress` class as this config's Serve deployment, with the HTTP API in front."""
    from app.serving.ingress import Ingress
    from app.serving.routes import build_api

    return serve.deployment(
        name="ingress",
        max_ongoing_requests=256,
        autoscaling_config=cfg.serve.ingress.model_dump(),
        ray_actor_options={"num_cpus": 1},
        health_check_period_s=5,
        # Requests are in the traffic log and the metrics; an access-log line each would only
        # add log volume (no throughput change measured either way).
        logging_config={"enable_access_log": False},
    )(serve.ingress(build_api(cfg))(Ingress))


def application(cfg: AppConfig, *, admin_token_sha256: str | None = None):
    """The app for this config; admin routes take the token whose digest is given, else the
    token in this process's environment (only its digest reaches the replicas)."""
    from app.serving.auth import token_digest
    from app.serving.model_set import Model

    token = secret(TOKEN_ENV)
    digest = admin_token_sha256 or (token_digest(token) if token else None)
    data = cfg.model_dump(mode="json")
    exp = cfg.serve.experiment
    handles = {}
    if cfg.serve.placement == "deployment":
        for alias in exp.aliases:
            handles[alias] = Model.options(
                name=f"model-{alias}",
                autoscaling_config=cfg.serve.models.model_dump(),
                ray_actor_options={"num_cpus": 1, "num_gpus": 1 if cfg.serve.use_gpu else 0},
            ).bind(data, alias)
    ingress = ingress_deployment(cfg).options(user_config={"experiment": exp.model_dump()})
    return ingress.bind(data, handles, digest)


def admin_token_set() -> bool:
    return secret(TOKEN_ENV) is not None


def build_app(args: dict | ServeArgs | None = None):
    args = ServeArgs.model_validate(args or {})
    return application(load_config(args.config), admin_token_sha256=args.admin_token_sha256)


def base_url(cfg: AppConfig) -> str:
    host = "127.0.0.1" if cfg.serve.http_host in ("0.0.0.0", "::") else cfg.serve.http_host
    return f"http://{host}:{cfg.serve.http_port}"


class ServiceNotReady(RuntimeError):
    """The application did not become healthy in time; says what Serve reports about it."""


def start(cfg: AppConfig, *, name: str = APP_NAME, route_prefix: str = "/", timeout_s: float = 180) -> str:
    """Deploy the app on the connected cluster and wait until /healthz answers; returns its URL."""
    if not verbose_console():
        # Serve's own logger (set to INFO when Serve is imported) narrates starting, connecting
        # to and deleting applications on this console; our commands say what they did.
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(
        http_options={"host": cfg.serve.http_host, "port": cfg.serve.http_port},
        grpc_options=grpc_options(cfg),
    )
    # Not serve.run: it waits for the replicas without a time limit, so a replica that can never
    # be placed (more replicas than the cluster has CPUs) would hang the command in silence.
    serve.run_many(
        [serve.RunTarget(application(cfg), name=name, route_prefix=route_prefix)],
        wait_for_ingress_deployment_creation=False,
        wait_for_applications_running=False,
    )
    deadline = time.monotonic() + timeout_s
    wait_running(name, deadline)
    url = base_url(cfg) + route_prefix.rstrip("/")
    try:
        wait_healthy(url, timeout_s=max(5.0, deadline - time.monotonic()))
    except TimeoutError as exc:
        raise ServiceNotReady(f"{exc}; Serve reports: {deployment_messages(name)}") from None
    return url


def grpc_options(cfg: AppConfig) -> dict:
    """Serve's gRPC proxy with the Open Inference Protocol's service (off when the port is 0)."""
    from app.serving.oip_grpc import SERVICER

    return {"port": cfg.serve.grpc_port, "grpc_servicer_functions": [SERVICER] if cfg.serve.grpc_port else []}


def wait_running(name: str, deadline: float) -> None:
    """Until every deployment of the application runs (the ingress alone may answer before)."""
    while True:
        app = serve.status().applications.get(name)
        state = app.status.value if app else "NOT_STARTED"
        if state == "RUNNING":
            return
        if state == "DEPLOY_FAILED" or time.monotonic() > deadline:
            raise ServiceNotReady(
                f"application {name!r} is {state}; Serve reports: {deployment_messages(name)}"
            )
        time.sleep(0.5)


def deployment_messages(name: str) -> str:
    app = serve.status().applications.get(name)
    if app is None:
        return f"no application {name!r}"
    notes = [f"{d}: {s.status.value} {s.message}".strip() for d, s in app.deployments.items()]
    return "; ".join(notes) or app.message or app.status.value


def wait_healthy(url: str, *, timeout_s: float) -> dict:
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
                health = json.load(resp)
            if health.get("status") == "ok":
                return health
            last = json.dumps(health)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s:.0f} s ({last})")


def stop(name: str = APP_NAME) -> None:
    serve.delete(name)


class NothingToServe(RuntimeError):
    """A serve command that cannot run in the current state (no model, no cluster)."""


def launch(cfg: AppConfig, *, detach: bool) -> str:
    """Serve the registry's champion (and challenger): on the configured cluster, or, when
    `detach` asks the service to outlive this process, on a local `ray start` head (started
    if none runs). Returns the service URL."""
    import ray

    from app.cluster.connection import connect, start_head, started_head_address
    from app.registry.registry import CHAMPION, Registry

    if Registry(cfg).alias_version(CHAMPION) is None:
        raise NothingToServe("no champion in the registry: run `mlsys train` (or `mlsys pipeline`) first")
    if detach and not _remote(cfg):
        if not started_head_address():
            start_head(cfg.ray)
        ray.init(address="auto", logging_level=logging.WARNING)
    else:
        connect(cfg.ray)
    return start(cfg)


def shutdown(cfg: AppConfig) -> None:
    """Tear the application down on the cluster it runs on (the cluster keeps running)."""
    from app.cluster.connection import join_running, started_head_address

    if not _remote(cfg) and not started_head_address():
        raise NothingToServe("no running Ray cluster to stop a service on")
    join_running(cfg.ray)
    stop()


def _remote(cfg: AppConfig) -> bool:
    return bool(cfg.ray.address or os.environ.get("RAY_ADDRESS"))


def live_report_html(cfg: AppConfig) -> str:
    """The running service's drift and experiment report as one HTML page."""
    import ray

    from app.cluster.connection import join_running
    from app.monitoring import report
    from app.monitoring.monitor import get_monitor
    from app.serving.control import get_control

    join_running(cfg.ray)
    monitor = get_monitor(cfg)
    experiment = ray.get(get_control(cfg).state.remote()).experiment
    return report.render(ray.get(monitor.drift.remote()), ray.get(monitor.report.remote(experiment)))
