"""How results look in a terminal: rich tables and summaries the CLI prints (no logic)."""

from __future__ import annotations

from rich.table import Table


def etl_table(report: dict) -> Table:
    table = Table(title=f"ETL run {report['run_id']}", show_header=False)
    for key in (
        "source",
        "files",
        "rows_read",
        "rows_written",
        "duplicates",
        "rows_quarantined",
        "partitions",
        "seconds",
    ):
        value = report[key]
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    for reason, n in report["quarantined"].items():
        table.add_row(f"  quarantined: {reason}", f"{n:,}")
    return table


def training_summary(outcome) -> str:
    m = outcome.metrics
    head = (
        f"holdout AUC {m['holdout']['auc']:.4f} (HistGradientBoosting {m['baseline_hgb']['auc']:.4f}), "
        f"log loss {m['holdout']['log_loss']:.4f}, Brier {m['holdout']['brier']:.4f}"
    )
    if outcome.version is None:
        return f"{head}\nnot registered: the evaluation gate refused it ({outcome.gate})"
    return f"{head}\nregistered version {outcome.version} as {outcome.alias} ({outcome.gate})"


def drift_table(report: dict) -> Table:
    alert = "[red]ALERT[/]" if report["alert"] else "ok"
    table = Table(
        title=f"drift vs champion v{report['reference_version']} ({alert}, PSI alert > {report['psi_alert']})"
    )
    for col in ("variant", "window", "feature", "PSI", "severity", "test", "statistic", "p (BH)", "missing"):
        table.add_column(col)
    for variant, r in report["variants"].items():
        for name, f in r["features"].items():
            psi = "-" if f["psi"] is None else f"{f['psi']:.4f}"
            p = f.get("p_adjusted")
            table.add_row(
                variant,
                f"{r['window']} ({r['n']})",
                name,
                psi,
                str(f.get("severity") or f.get("reason")),
                f.get("test", "-"),
                f"{f.get('statistic', float('nan')):.4f}",
                "-" if p is None else f"{p:.2g}",
                str(f["missing"]),
            )
    return table


def experiment_summary(report: dict | None) -> Table:
    from app.serving.experiment import format_lift  # scipy: imported only when a report is shown

    table = Table(
        title=f"experiment {report.get('experiment') if report else ''}: {report and report['metric']}"
    )
    for col in (
        "variant",
        "requests",
        "outcomes",
        "accuracy",
        "conversion",
        "AUC",
        "p99 ms",
        "vs control",
        "decision",
    ):
        table.add_column(col)
    if not report:
        return table
    for name, v in report["variants"].items():
        cmp = report["comparisons"].get(name)
        lift = format_lift(cmp)

        def fmt(x):
            return "-" if x is None else f"{x:.3f}"

        table.add_row(
            name,
            str(v["requests"]),
            str(v["outcomes"]),
            fmt(v["accuracy"]),
            fmt(v["conversion"]),
            fmt(v["auc"]),
            fmt(v["latency_ms"]["p99"]),
            lift,
            cmp["decision"] if cmp else "(control)",
        )
    return table
