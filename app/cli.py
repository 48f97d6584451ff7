"""The `mlsys` command line: each command is a thin adapter over one library call.

Errors a user can fix (config, input data) end as one `error:` line and exit code 2;
nothing else is caught, so real bugs keep their traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.config import AppConfig, ConfigError, load_config
from app.views import (
    demo_report,
    drift_table,
    etl_table,
    evaluation_table,
    models_table,
    search_tables,
    training_summary,
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="mlsys: a Ray-native ML system (ETL, features, training, serving, drift).",
)
data_app = typer.Typer(no_args_is_help=True, help="Built-in data set.")
features_app = typer.Typer(no_args_is_help=True, help="Feast feature store.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
# Piped output (logs, scripts, tests) gets wide lines instead of rich's 80-column default,
# so tables are not truncated mid-word.
out = Console(width=None if sys.stdout.isatty() else 200)
models_app = typer.Typer(no_args_is_help=True, help="MLflow model registry.")
app.add_typer(models_app, name="models")


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors a user can fix, imported only once something was raised: the command line
    itself must not pull in torch, Ray or Feast before it parses its arguments."""
    from app.data.schema import DataError
    from app.model.bundle import BundleError
    from app.registry.registry import RegistryError
    from app.serving.app import NothingToServe, ServiceNotReady
    from app.training.dataset import TrainingDataError

    fixable = (ConfigError, DataError, TrainingDataError, RegistryError, BundleError)
    return (*fixable, NothingToServe, ServiceNotReady)


# Why a Ctrl-C'd pipeline is safe to run again: every write it makes is atomic (warehouse
# partitions, the registry's aliases), ETL skips rows already in the warehouse and training
# starts over, so the re-run ends where an uninterrupted run would have.
INTERRUPTED = (
    "interrupted: {what} stopped before it finished. Nothing half-written is kept (warehouse "
    "partitions and registry aliases change atomically); run the same command again: ETL skips "
    "rows already in the warehouse and training starts over."
)


@contextmanager
def _rerun_hint_on_ctrl_c(what: str) -> Iterator[None]:
    """Ctrl-C ends a long command with exit code 130 and what to do next, not click's `Aborted!`."""
    try:
        yield
    except KeyboardInterrupt:
        Console(stderr=True, soft_wrap=True).print(INTERRUPTED.format(what=what), highlight=False)
        raise typer.Exit(130) from None


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="config YAML")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = {"config_path": config}


def _cfg(ctx: typer.Context) -> AppConfig:
    return load_config(ctx.obj["config_path"])


@data_app.command("generate")
def data_generate(
    out_path: Annotated[Path, typer.Option("--out", help="folder, or a .parquet/.csv/.jsonl file")],
    rows: Annotated[int, typer.Option(min=1)] = 100_000,
    seed: int = 0,
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="0 = none, 1 = strong")] = 0.0,
    start: Annotated[str | None, typer.Option(help="first day, YYYY-MM-DD")] = None,
    fmt: Annotated[str, typer.Option("--format", help="file format inside a folder")] = "parquet",
) -> None:
    """Generate the built-in data set (deterministic for a seed and start)."""
    from app.data.synthetic import generate_chunks, write_dataset

    paths = write_dataset(generate_chunks(rows, seed=seed, drift=drift, start=start), out_path, fmt)
    out.print(f"wrote {rows:,} rows to {len(paths)} file(s) under {out_path}")


@app.command()
def etl(
    ctx: typer.Context,
    input_path: Annotated[str | None, typer.Option("--input", help="path, glob or URI")] = None,
) -> None:
    """Raw files -> validated, de-duplicated warehouse; bad rows to quarantine."""
    from app.data.etl import run_etl

    report = run_etl(_cfg(ctx), input_path)
    out.print(etl_table(report.to_dict()))


@features_app.command("apply")
def features_apply(ctx: typer.Context) -> None:
    """Compute features from the warehouse and register them with Feast."""
    from app.features.store import FeatureClient

    client = FeatureClient(_cfg(ctx))
    rebuilt = client.apply()
    out.print(
        f"feature table: {rebuilt} date partition(s) rebuilt; feature service "
        f"{client.service_name!r} ({len(client.spec.names)} features) applied"
    )


@features_app.command("materialize")
def features_materialize(ctx: typer.Context) -> None:
    """Load new offline feature rows into the online store (incremental)."""
    from app.features.store import FeatureClient

    window = FeatureClient(_cfg(ctx)).materialize()
    if window is None:
        out.print("online store is up to date: no feature rows newer than the last run")
    else:
        out.print(f"materialized {window[0]:%Y-%m-%d %H:%M} .. {window[1]:%Y-%m-%d %H:%M} UTC")


@app.command()
def train(ctx: typer.Context) -> None:
    """Train on the feature store's point-in-time training set (Ray Train DDP), evaluate, gate, register."""
    from app.pipeline import train_and_register

    with _rerun_hint_on_ctrl_c("training"):
        outcome = train_and_register(_cfg(ctx))
    out.print(training_summary(outcome))


@app.command()
def tune(
    ctx: typer.Context, samples: Annotated[int | None, typer.Option(help="trials per search")] = None
) -> None:
    """Ray Tune: the torch model (ASHA, tracked in MLflow) and the random-forest baseline."""
    from app.pipeline import search

    for renderable in search_tables(search(_cfg(ctx), num_samples=samples)):
        out.print(renderable)


@app.command()
def evaluate(
    ctx: typer.Context, ref: Annotated[str, typer.Option("--model", help="alias or version")] = "champion"
) -> None:
    """Score a registered model on the current holdout: overall, per slice, calibration."""
    from app.pipeline import evaluate_registered

    out.print(evaluation_table(ref, evaluate_registered(_cfg(ctx), ref)))


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """Registered versions with aliases, holdout metrics and lineage."""
    from app.registry.registry import Registry

    out.print(models_table(Registry(_cfg(ctx)).versions()))


@models_app.command("promote")
def models_promote(ctx: typer.Context, version: int) -> None:
    """Make VERSION the champion."""
    from app.registry.registry import Registry

    Registry(_cfg(ctx)).promote(version)
    out.print(f"version {version} is now the champion")


@models_app.command("rollback")
def models_rollback(ctx: typer.Context) -> None:
    """Point the champion back at the previous champion."""
    from app.registry.registry import Registry

    out.print(f"champion rolled back to version {Registry(_cfg(ctx)).rollback()}")


@app.command()
def pipeline(ctx: typer.Context, input_path: Annotated[str | None, typer.Option("--input")] = None) -> None:
    """Every stage in order (the `ray job submit` entry point)."""
    from app.pipeline import run_pipeline

    with _rerun_hint_on_ctrl_c("the pipeline"):
        result = run_pipeline(_cfg(ctx), source=input_path)
    out.print(etl_table(result.etl.to_dict()))
    out.print(training_summary(result.training))
    out.print(json.dumps({"stages_s": result.stages}))


@app.command()
def serve(
    ctx: typer.Context,
    detach: Annotated[
        bool, typer.Option("--detach", help="return once healthy; the service keeps running")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="tear the service down")] = False,
) -> None:
    """Serve the champion (and challenger) behind the A/B router on Ray Serve."""
    import time

    from app.serving import app as serving_app

    cfg = _cfg(ctx)
    if stop:
        serving_app.shutdown(cfg)
        out.print(
            f"stopped the {serving_app.APP_NAME} application (the cluster keeps running: `ray stop` ends it)"
        )
        return
    url = serving_app.launch(cfg, detach=detach)
    out.print(f"serving at {url}  (API docs: {url}/docs)")
    out.print(
        f"try: curl -s -X POST {url}/predict -H 'content-type: application/json' -d '{{\"entity_id\": 1}}'"
    )
    if not os.environ.get(serving_app.TOKEN_ENV) and cfg.serve.admin_auth:
        out.print(f"admin routes are off: set {serving_app.TOKEN_ENV} before `mlsys serve` to enable them")
    if detach:
        return
    out.print("Ctrl-C stops the service")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serving_app.stop()


monitor_app = typer.Typer(no_args_is_help=True, help="Drift monitor and retraining.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("status")
def monitor_status(ctx: typer.Context) -> None:
    """The drift monitor's last windows (PSI / KS / chi-square), alerts and retrain decisions."""
    from app.monitoring.monitor import drift_report

    report = drift_report(_cfg(ctx))
    out.print(drift_table(report))
    for d in report["retrain"]["decisions"]:
        out.print(f"retrain decision: {d['trigger'] or 'none'} - {d['reason']} (job {d['job_id']})")


@app.command()
def report(
    ctx: typer.Context,
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
) -> None:
    """Write the drift and A/B experiment report as a self-contained HTML page."""
    from app.files import atomic_write_text
    from app.serving.app import live_report_html

    out.print(f"wrote {atomic_write_text(out_path, live_report_html(_cfg(ctx)))}")


@app.command()
def online(
    ctx: typer.Context,
    every: Annotated[float | None, typer.Option(help="repeat every N seconds (Ctrl-C stops)")] = None,
    min_rows: Annotated[int, typer.Option(min=10)] = 200,
) -> None:
    """Online learning: fine-tune the champion on new feedback; publish only an improvement."""
    import time

    from app.monitoring.online import online_step

    cfg = _cfg(ctx)
    while True:
        step = online_step(cfg, min_rows=min_rows)
        published = (
            f"published version {step.published} as champion" if step.published else "nothing published"
        )
        out.print(f"{step.rows} labelled rows: {published} ({step.reason})")
        if every is None:
            return
        time.sleep(every)


@app.command()
def demo(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(min=1000)] = 50_000,
    traffic: Annotated[int, typer.Option(min=500, help="requests per replay (one monitor window)")] = 2000,
    keep_serving: Annotated[bool, typer.Option("--keep-serving", help="leave the service up")] = False,
    tune_samples: Annotated[int, typer.Option(min=1, help="trials of the search before training")] = 4,
) -> None:
    """The whole loop on the built-in data: pipeline, serving, A/B, drift, retrain."""
    import time

    from app.demo import run_demo, stop_demo
    from app.features.store import FeatureClient

    cfg = _cfg(ctx)
    try:
        result = run_demo(cfg, rows=rows, traffic=traffic, tune_samples=tune_samples)
        sample = FeatureClient(cfg).online([1, 2, 3])
        for renderable in demo_report(result, online_sample=sample, mlflow_uri=cfg.mlflow_uri):
            out.print(renderable)
        if keep_serving:
            out.print("serving until Ctrl-C")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        out.print("interrupted: stopping the service and the local cluster")
    finally:
        stop_demo()


def main() -> None:
    try:
        app()
    except _user_errors() as exc:  # evaluated only once something was raised
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
