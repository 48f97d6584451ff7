"""Commands over registered models and the running service: models, serve, monitor, report, alerts,
online."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.base import HELP_MARKUP, app, cfg_of, models_app, out
from app.monitor_views import drift_table, ledger_table, performance_table
from app.views import models_table


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """Registered versions with aliases, holdout metrics and lineage."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.registry.registry import Registry

    out.print(models_table(Registry(cfg).versions()))


@models_app.command("show")
def models_show(ctx: typer.Context, version: int) -> None:
    """One version's card: aliases, holdout metrics, the gate's verdict, lineage and feature importance."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.cards import model_card
    from app.registry.registry import Registry

    registry = Registry(cfg)
    bundle = registry.load(version)
    info = next((v for v in registry.versions() if v.version == version), None)
    aliases = info.aliases if info else ()
    for part in model_card(version, aliases, bundle.metrics, bundle.lineage, bundle.family):
        out.print(part)


@models_app.command("history")
def models_history(ctx: typer.Context) -> None:
    """The promotion ledger: every alias change, who made it, and the evidence."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.registry.registry import Registry

    out.print(ledger_table(Registry(cfg).promotion_ledger()))


@models_app.command("promote")
def models_promote(ctx: typer.Context, version: int) -> None:
    """Make VERSION the champion."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.registry.registry import Registry

    Registry(cfg).promote(version)
    out.print(f"version {version} is now the champion")


@models_app.command("rollback")
def models_rollback(ctx: typer.Context) -> None:
    """Point the champion back at the previous champion."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.registry.registry import Registry

    out.print(f"champion rolled back to version {Registry(cfg).rollback()}")


@app.command()
def serve(
    ctx: typer.Context,
    detach: Annotated[
        bool, typer.Option("--detach", help="return once healthy; the service keeps running")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="tear the service down")] = False,
) -> None:
    """Serve the champion (and challenger) behind the A/B router on Ray Serve."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    import time

    from app.serving import app as serving_app

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
    if not serving_app.admin_token_set() and cfg.serve.admin_auth:
        out.print(f"admin routes are off: set {serving_app.TOKEN_ENV} before `mlsys serve` to enable them")
    if detach:
        return
    out.print("Ctrl-C stops the service")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serving_app.stop()


monitor_app = typer.Typer(
    no_args_is_help=True, help="Drift monitor and retraining.", rich_markup_mode=HELP_MARKUP
)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("status")
def monitor_status(ctx: typer.Context) -> None:
    """Show the drift monitor's last windows, its alerts and its retrain decisions.

    Per variant and feature: PSI, and a KS or chi-square test with Benjamini-Hochberg adjusted
    p-values; per variant the labelled window (AUC, log loss, calibration) and its band.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.monitoring.monitor import drift_report

    report = drift_report(cfg)
    out.print(drift_table(report))
    out.print(performance_table(report))
    for d in report.retrain.decisions:
        out.print(f"retrain decision: {d.trigger or 'none'} - {d.reason} (job {d.job_id})")


@monitor_app.command("reload")
def monitor_reload(ctx: typer.Context) -> None:
    """Give the running monitor this config's thresholds, retrain schedule and cooldown.

    The `monitor` and `retrain` sections reach the monitor without a restart; its counts are
    kept.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.monitoring.monitor import reload_config

    out.print(f"monitor reloaded: {reload_config(cfg)}")


@app.command()
def report(
    ctx: typer.Context,
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
) -> None:
    """Write the drift and A/B experiment report as a self-contained HTML page."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.files import atomic_write_text
    from app.serving.app import live_report_html

    out.print(f"wrote {atomic_write_text(out_path, live_report_html(cfg))}")


@app.command()
def alerts(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="folder for alerts.yml + alerts_test.yml (created)")],
) -> None:
    """Write the Prometheus alert rules and their promtool test from the config's thresholds."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.files import atomic_write_text
    from app.monitoring.alerts import render

    for name, text in render(cfg.monitor).items():
        out.print(f"wrote {atomic_write_text(out_dir / name, text)}")


@app.command()
def online(
    ctx: typer.Context,
    every: Annotated[float | None, typer.Option(help="repeat every N seconds (Ctrl-C stops)")] = None,
    min_rows: Annotated[int, typer.Option(min=10)] = 200,
) -> None:
    """Fine-tune the champion on new feedback (online learning).

    An improvement that passes the evaluation gate becomes the challenger.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    import time

    from app.monitoring.online import online_step

    while True:
        step = online_step(cfg, min_rows=min_rows)
        out.print(f"{step.rows} labelled rows: {step.reason}")
        if every is None:
            return
        time.sleep(every)
