"""The Serve application: `build_app(args)` is the import path of `serve deploy` and `mlsys serve`.

    serve deploy deployments/serve_config.yaml      # import_path: app.serving.graph:build_app

The admin token is read from MLSYS_ADMIN_TOKEN where the app is built and handed to the
ingress only as a SHA-256 digest, so it never appears in the dashboard or the Serve config.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from pydantic import BaseModel, ConfigDict
from ray import serve

from app.config import AppConfig, load_config

APP_NAME = "mlsys"
TOKEN_ENV = "MLSYS_ADMIN_TOKEN"


class ServeArgs(BaseModel):
    """Arguments of `build_app` (the `args:` of an application in a Serve config)."""

    model_config = ConfigDict(extra="forbid")
    config: str | None = None  # the mlsys config file; default MLSYS_CONFIG or the local config


def application(cfg: AppConfig):
    from app.serving.deployments import ingress_deployment, token_digest
    from app.serving.models import Model

    token = os.environ.get(TOKEN_ENV)
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
    return ingress.bind(data, handles, token_digest(token) if token else None)


def build_app(args: dict | ServeArgs | None = None):
    args = ServeArgs.model_validate(args or {})
    return application(load_config(args.config))


def base_url(cfg: AppConfig) -> str:
    host = "127.0.0.1" if cfg.serve.http_host in ("0.0.0.0", "::") else cfg.serve.http_host
    return f"http://{host}:{cfg.serve.http_port}"


class ServiceNotReady(RuntimeError):
    """The application did not become healthy in time; says what Serve reports about it."""


def start(cfg: AppConfig, *, name: str = APP_NAME, route_prefix: str = "/", timeout_s: float = 180) -> str:
    """Deploy the app on the connected cluster and wait until /healthz answers; returns its URL."""
    serve.start(http_options={"host": cfg.serve.http_host, "port": cfg.serve.http_port})
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
