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
from rich.table import Table

from app.config import AppConfig, ConfigError, load_config
from app.data.schema import DataError
from app.registry.bundle import BundleError
from app.registry.registry import RegistryError
from app.training.dataset import TrainingDataError
from app.views import drift_table, etl_table, experiment_summary, training_summary

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


class ServeError(RuntimeError):
    """A serve command that cannot run in the current state (no model, no cluster)."""


def _user_errors() -> tuple[type[Exception], ...]:
    from app.serving.graph import ServiceNotReady  # Serve is imported only by commands that serve

    fixable = (ConfigError, DataError, TrainingDataError, RegistryError, BundleError)
    return (*fixable, ServeError, ServiceNotReady)


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


def _join_running_cluster(cfg: AppConfig) -> None:
    """Join the cluster a service runs on (never start one: there would be nothing to read)."""
    import ray

    ray.init(
        address=cfg.ray.address or os.environ.get("RAY_ADDRESS") or "auto", logging_level=logging.WARNING
    )


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

    result = search(_cfg(ctx), num_samples=samples)
    for title, found, metric in (
        ("torch MLP (validation log loss)", result.torch, "val_loss"),
        ("random forest (3-fold CV AUC)", result.forest, "cv_auc"),
    ):
        table = Table(title=title)
        for col in found.trials.columns:
            table.add_column(col.removeprefix("config/"))
        for row in found.trials.itertuples(index=False):
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        out.print(table)
        out.print(f"best {metric}: {found.best_metric:.4f} with {found.best_config}")


@app.command()
def evaluate(
    ctx: typer.Context, ref: Annotated[str, typer.Option("--model", help="alias or version")] = "champion"
) -> None:
    """Score a registered model on the current holdout: overall, per slice, calibration."""
    from app.registry.registry import Registry
    from app.training.dataset import build_splits
    from app.training.fit import evaluate_bundle

    cfg = _cfg(ctx)
    metrics = evaluate_bundle(Registry(cfg).load(ref), build_splits(cfg), cfg.dataset.label)
    table = Table(title=f"{ref} on the holdout")
    for col in ("slice", "n", "auc", "log_loss", "accuracy", "brier", "ece"):
        table.add_column(col)
    rows = [("overall", metrics["holdout"])] + [
        (f"{col}={value}", m) for col, slices in metrics["slices"].items() for value, m in slices.items()
    ]
    for name, m in rows:
        table.add_row(
            name, str(m["n"]), *(f"{m[k]:.4f}" for k in ("auc", "log_loss", "accuracy", "brier", "ece"))
        )
    out.print(table)


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """Registered versions with aliases, holdout metrics and lineage."""
    from app.registry.registry import Registry

    table = Table(title="registered models")
    for col in ("version", "aliases", "holdout AUC", "HGB AUC", "data", "config", "git"):
        table.add_column(col)
    for v in Registry(_cfg(ctx)).versions():
        table.add_row(
            str(v.version),
            ",".join(v.aliases),
            f"{v.metrics.get('holdout.auc', float('nan')):.4f}",
            f"{v.metrics.get('baseline_hgb.auc', float('nan')):.4f}",
            v.tags.get("lineage.data_fingerprint", ""),
            v.tags.get("lineage.config_hash", ""),
            v.tags.get("lineage.git_sha", ""),
        )
    out.print(table)


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

    import ray

    from app.cluster import connect, start_head, started_head_address
    from app.registry.registry import CHAMPION, Registry
    from app.serving import graph

    cfg = _cfg(ctx)
    local = not (cfg.ray.address or os.environ.get("RAY_ADDRESS"))
    if stop:
        if local and not started_head_address():
            raise ServeError("no running Ray cluster to stop a service on")
        _join_running_cluster(cfg)
        graph.stop()
        out.print(f"stopped the {graph.APP_NAME} application (the cluster keeps running: `ray stop` ends it)")
        return
    if Registry(cfg).alias_version(CHAMPION) is None:
        raise ServeError("no champion in the registry: run `mlsys train` (or `mlsys pipeline`) first")
    if detach and local:
        # The service must outlive this command, so it goes on a cluster of its own processes.
        if not started_head_address():
            start_head(cfg.ray)
        ray.init(address="auto", logging_level=logging.WARNING)
    else:
        connect(cfg.ray)
    url = graph.start(cfg)
    out.print(f"serving at {url}  (API docs: {url}/docs)")
    out.print(
        f"try: curl -s -X POST {url}/predict -H 'content-type: application/json' -d '{{\"entity_id\": 1}}'"
    )
    if not os.environ.get(graph.TOKEN_ENV) and cfg.serve.admin_auth:
        out.print(f"admin routes are off: set {graph.TOKEN_ENV} before `mlsys serve` to enable them")
    if detach:
        return
    out.print("Ctrl-C stops the service")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        graph.stop()


monitor_app = typer.Typer(no_args_is_help=True, help="Drift monitor and retraining.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("status")
def monitor_status(ctx: typer.Context) -> None:
    """The drift monitor's last windows (PSI / KS / chi-square), alerts and retrain decisions."""
    import ray

    from app.monitoring.monitor import get_monitor

    cfg = _cfg(ctx)
    _join_running_cluster(cfg)
    report = ray.get(get_monitor(cfg).drift.remote())
    out.print(drift_table(report))
    for d in report["retrain"]["decisions"]:
        out.print(f"retrain decision: {d['trigger'] or 'none'} - {d['reason']} (job {d['job_id']})")


@app.command()
def report(
    ctx: typer.Context,
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
) -> None:
    """Write the drift and A/B experiment report as a self-contained HTML page."""
    import ray

    from app.files import atomic_write_text
    from app.monitoring import report as html_report
    from app.monitoring.monitor import get_monitor
    from app.serving.control import get_control

    cfg = _cfg(ctx)
    _join_running_cluster(cfg)
    monitor = get_monitor(cfg)
    experiment = ray.get(get_control(cfg).state.remote())["experiment"]
    page = html_report.render(ray.get(monitor.drift.remote()), ray.get(monitor.report.remote(experiment)))
    out.print(f"wrote {atomic_write_text(out_path, page)}")


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

    from app.features.store import FeatureClient
    from app.pipeline import run_demo
    from app.registry.registry import tracking_uri
    from app.serving import graph

    cfg = _cfg(ctx)
    try:
        result = run_demo(cfg, rows=rows, traffic=traffic, tune_samples=tune_samples)
        out.print(etl_table(result.etl.to_dict()))
        out.print("online features for users 1-3:", FeatureClient(cfg).online([1, 2, 3]))
        out.print(training_summary(result.training))
        out.print(f"served: {dict(result.served)}")
        if result.drift:
            out.print(drift_table(result.drift))
        out.print(f"retrain job {result.retrain_job}: {result.retrain_status}")
        out.print(experiment_summary(result.report))
        out.print(f"stages (s): {result.stages}")
        out.print(f"API docs: {result.url}/docs   experiment report: {result.url}/experiment/report")
        out.print(f"report (drift + A/B, HTML): {result.report_file}")
        out.print(f"MLflow UI: mlflow ui --backend-store-uri {tracking_uri(cfg)}")
        if result.dashboard_url:
            out.print(f"Ray dashboard (while this process runs): {result.dashboard_url}")
        if keep_serving:
            out.print("serving until Ctrl-C")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        out.print("interrupted: stopping the service and the local cluster")
    finally:
        import ray

        if ray.is_initialized():
            from contextlib import suppress

            with suppress(Exception):
                graph.stop()
            ray.shutdown()


def main() -> None:
    try:
        app()
    except _user_errors() as exc:  # evaluated only once something was raised
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
