"""Commands that build the model: data, etl, features, train, tune, evaluate, pipeline, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.base import app, cfg_of, data_app, features_app, out, rerun_hint_on_ctrl_c
from app.views import (
    comparison_table,
    demo_report,
    etl_table,
    evaluation_table,
    search_tables,
    training_summary,
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


@data_app.command("production")
def data_production(
    ctx: typer.Context,
    cutoff: Annotated[
        str | None, typer.Option(help="ISO time (UTC if no zone): outcomes reported later are left out")
    ] = None,
) -> None:
    """Build the production table: served rows joined to the outcomes reported for them.

    What `retrain.data: production` or `both` trains on: the traffic log's predictions joined
    by request id to their outcomes, those reported at or before the cutoff (default: now),
    served within `retrain.production_days`; an Iceberg table partitioned by date, one snapshot
    per build. Each training run builds its own; this shows what one would learn from now.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    import pandas as pd

    from app.monitoring.production import build_table

    try:
        at = None if cutoff is None else pd.Timestamp(cutoff)
    except ValueError:
        at = pd.NaT
    if at is pd.NaT:
        raise typer.BadParameter(f"{cutoff!r} is not a time (e.g. 2026-03-01T12:00)", param_hint="--cutoff")
    table = build_table(cfg, cutoff=at)
    out.print(
        f"production table {table.build}: {table.rows:,} labelled rows served {table.since} .. "
        f"{table.cutoff} over {len(table.dates)} date(s), snapshot {table.snapshot_id or 'none (no rows)'}"
    )


@app.command()
def etl(
    ctx: typer.Context,
    input_path: Annotated[str | None, typer.Option("--input", help="path, glob or URI")] = None,
) -> None:
    """Load raw files into the warehouse, validated and de-duplicated; bad rows go to quarantine."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.data.etl import run_etl

    report = run_etl(cfg, input_path)
    out.print(etl_table(report.to_dict()))


@features_app.command("apply")
def features_apply(ctx: typer.Context) -> None:
    """Compute features from the warehouse and register them with Feast."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.features.store import FeatureClient

    client = FeatureClient(cfg)
    rebuilt = client.apply()
    out.print(
        f"feature table: {rebuilt} date partition(s) rebuilt; feature service "
        f"{client.service_name!r} ({len(client.spec.names)} features) applied"
    )


@features_app.command("materialize")
def features_materialize(ctx: typer.Context) -> None:
    """Load new offline feature rows into the online store (incremental)."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.features.store import FeatureClient

    window = FeatureClient(cfg).materialize()
    if window is None:
        out.print("online store is up to date: no feature rows newer than the last run")
    else:
        out.print(f"materialized {window[0]:%Y-%m-%d %H:%M} .. {window[1]:%Y-%m-%d %H:%M} UTC")


@app.command()
def train(
    ctx: typer.Context,
    as_of: Annotated[
        int | None,
        typer.Option(
            "--as-of",
            help="train on the warehouse at this snapshot (a model's lineage.warehouse_snapshot), "
            "whatever landed since",
        ),
    ] = None,
) -> None:
    """Train a model with Ray Train, then evaluate, gate and register it.

    The family is `model.family` (for `auto`, the family the last search found best), with the
    search's hyperparameters where there are some, trained on the point-in-time training set.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.pipeline import train_and_register
    from app.training.dataset import build_splits

    with rerun_hint_on_ctrl_c("training"):
        outcome = train_and_register(cfg, splits=None if as_of is None else build_splits(cfg, as_of))
    out.print(training_summary(outcome))


@app.command()
def tune(
    ctx: typer.Context, samples: Annotated[int | None, typer.Option(help="trials per search")] = None
) -> None:
    """Search each model family's hyperparameters with Ray Tune.

    The MLP, the XGBoost trees and the random-forest baseline are searched on the same split,
    every trial tracked in MLflow; the best family and its hyperparameters are what `train`
    fits next.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.pipeline import search

    for renderable in search_tables(search(cfg, num_samples=samples)):
        out.print(renderable)


@app.command()
def evaluate(
    ctx: typer.Context, ref: Annotated[str, typer.Option("--model", help="alias or version")] = "champion"
) -> None:
    """Score a registered model on the current holdout.

    Overall, per slice and for calibration, beside the best registered model of each family
    and a HistGradientBoosting baseline.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.pipeline import evaluate_registered

    metrics = evaluate_registered(cfg, ref)
    out.print(evaluation_table(ref, metrics))
    out.print(comparison_table(ref, metrics))


@app.command()
def pipeline(ctx: typer.Context, input_path: Annotated[str | None, typer.Option("--input")] = None) -> None:
    """Run every stage in order (the `ray job submit` entry point)."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.pipeline import run_pipeline

    with rerun_hint_on_ctrl_c("the pipeline"):
        result = run_pipeline(cfg, source=input_path)
    out.print(etl_table(result.etl.to_dict()))
    out.print(training_summary(result.training))
    out.print(json.dumps({"stages_s": result.stages}))


@app.command()
def demo(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(min=1000)] = 50_000,
    traffic: Annotated[int, typer.Option(min=500, help="requests per replay (window: a quarter)")] = 2000,
    keep_serving: Annotated[bool, typer.Option("--keep-serving", help="leave the service up")] = False,
    tune_samples: Annotated[int, typer.Option(min=1, help="trials of the search before training")] = 4,
    bad_challenger: Annotated[
        bool, typer.Option("--bad-challenger", help="then inject a worse model: the rollout rolls it back")
    ] = False,
) -> None:
    """Run the whole loop on the built-in data: pipeline, serving, A/B, drift, retrain, rollout.

    Prints each stage as it finishes and the results at the end; `--verbose` adds the lines of
    Ray, Tune, Serve and the other libraries.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    import time

    from app.demo import run_demo, stop_demo
    from app.features.store import FeatureClient

    try:
        result = run_demo(
            cfg, rows=rows, traffic=traffic, tune_samples=tune_samples, bad_challenger=bad_challenger
        )
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
