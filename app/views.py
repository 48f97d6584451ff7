"""How results look in a terminal: rich tables and summaries the CLI prints (no logic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from app.config import FEATURE_TIMESTAMP

if TYPE_CHECKING:  # the rollout's module imports scipy: the CLI stays light
    from app.monitoring.experiment import ExperimentReport
    from app.monitoring.messages import DriftReport
    from app.monitoring.rollout import RolloutStatus


def etl_table(report: dict, *, reasons: bool = True) -> Table:
    """An ETL run's counts; with `reasons`, the quarantined rows per reason."""
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
    for reason, n in report["quarantined"].items() if reasons else ():
        table.add_row(f"  quarantined: {reason}", f"{n:,}")
    return table


def training_summary(outcome) -> str:
    m = outcome.metrics
    head = (
        f"{outcome.family} (hyperparameters from {outcome.source}): "
        f"holdout AUC {m['holdout']['auc']:.4f} (HistGradientBoosting {m['baseline_hgb']['auc']:.4f}), "
        f"log loss {m['holdout']['log_loss']:.4f}, Brier {m['holdout']['brier']:.4f}"
    )
    if outcome.version is None:
        return f"{head}\nnot registered: the evaluation gate refused it ({outcome.gate})"
    return f"{head}\nregistered version {outcome.version} as {outcome.alias} ({outcome.gate})"


def drift_table(report: DriftReport) -> Table:
    alert = "[red]ALERT[/]" if report.alert else "ok"
    table = Table(
        title=f"drift vs champion v{report.reference_version} ({alert}, PSI alert > {report.psi_alert})"
    )
    for col in ("variant", "window", "feature", "PSI", "severity", "test", "statistic", "p (BH)", "missing"):
        table.add_column(col)
    for variant, r in report.variants.items():
        for name, f in r.features.items():
            psi = "-" if f.psi is None else f"{f.psi:.4f}"
            p = f.p_adjusted
            table.add_row(
                variant,
                f"{r.window} ({r.n})",
                name,
                psi,
                str(f.severity or f.reason) + (" (calendar, no alert)" if f.alerting is False else ""),
                f.test or "-",
                f"{float('nan') if f.statistic is None else f.statistic:.4f}",
                "-" if p is None else f"{p:.2g}",
                str(f.missing),
            )
    return table


def performance_table(report: DriftReport) -> Table:
    """Per variant its labelled window: the metrics outcomes give, the label-free estimate of
    the same scores, and the band the window is judged by."""
    alert = "[red]DECAYED[/]" if report.performance_alert else "ok"
    table = Table(title=f"labelled performance ({alert})")
    for col in ("variant", "version", "window", "AUC", "estimated AUC", "log loss", "calibration", "band"):
        table.add_column(col)

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    for variant, w in report.performance.items():
        band = "-" if w.band is None else f"{w.band}: AUC under {fmt(w.auc_low)}"
        table.add_row(
            variant,
            str(w.model_version),
            f"{w.window} ({w.n})",
            fmt(w.auc) + (" [red]decayed[/]" if w.decayed else ""),
            fmt(w.estimated_auc),
            fmt(w.log_loss),
            fmt(w.calibration_error),
            band,
        )
    return table


def experiment_summary(report: ExperimentReport | None) -> Table:
    from app.monitoring.experiment import format_lift  # pydantic models: imported when a report is shown

    table = Table(title=f"experiment {report.experiment if report else ''}: {report and report.metric}")
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
    for name, v in report.variants.items():
        cmp = report.comparisons.get(name)

        def fmt(x):
            return "-" if x is None else f"{x:.3f}"

        table.add_row(
            name,
            str(v.requests),
            str(v.outcomes),
            fmt(v.accuracy),
            fmt(v.conversion),
            fmt(v.auc),
            fmt(v.latency_ms.p99),
            format_lift(cmp),
            cmp.decision if cmp else "(control)",
        )
    return table


def search_tables(result) -> list:
    """Each search's trials as a table, then its best configuration; last the verdict."""
    out: list = []
    for title, found, metric in (
        ("mlp: torch MLP (validation log loss)", result.torch, "val_loss"),
        ("gbdt: XGBoost trees (validation log loss)", result.gbdt, "val_loss"),
        ("baseline: random forest (3-fold CV AUC)", result.forest, "cv_auc"),
    ):
        if found is None:
            continue
        table = Table(title=title)
        for col in found.trials.columns:
            table.add_column(col.removeprefix("config/"))
        for row in found.trials.itertuples(index=False):
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        out += [table, f"best {metric}: {found.best_metric:.4f} with {found.best_config}"]
    choice = result.choice
    if choice is not None:
        losses = ", ".join(f"{f} {b['val_loss']:.4f}" for f, b in choice.best.items())
        out.append(
            f"best family by validation log loss: {choice.family} ({losses}); "
            f"training fits {result.family} with its best hyperparameters"
        )
    if result.seconds:
        out.append("search time (s): " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
    return out


def evaluation_table(ref: str, metrics: dict) -> Table:
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
    return table


def comparison_table(ref: str, metrics: dict) -> Table:
    """The evaluated model beside the best registered model of each family and HGB, one holdout."""
    table = Table(title=f"{ref} beside each family's best and the baseline, on the same holdout")
    for col in ("model", "family", "n", "auc", "log_loss", "accuracy", "brier"):
        table.add_column(col)
    for row in metrics.get("comparison", []):
        table.add_row(
            row["model"],
            row["family"],
            str(row["n"]),
            *(f"{row[k]:.4f}" for k in ("auc", "log_loss", "accuracy", "brier")),
        )
    return table


def models_table(versions: list) -> Table:
    table = Table(title="registered models")
    for col in ("version", "aliases", "family", "holdout AUC", "HGB AUC", "data", "config", "git"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            str(v.version),
            ",".join(v.aliases),
            v.family,
            f"{v.metrics.get('holdout.auc', float('nan')):.4f}",
            f"{v.metrics.get('baseline_hgb.auc', float('nan')):.4f}",
            v.tags.get("lineage.data_fingerprint", ""),
            v.tags.get("lineage.config_hash", ""),
            v.tags.get("lineage.git_sha", ""),
        )
    return table


def rollout_summary(status: RolloutStatus) -> str:
    """One line: how the rollout of a challenger ended (or where it stands), and why."""
    last = status.last_decision
    n = last.evidence.get("n", {}) if last else {}
    return (
        f"rollout of v{status.challenger}: {status.status} at {status.share:.0%} of the traffic "
        f"after {n.get('challenger', 0)} outcomes on it ({last.reason if last else 'no decision yet'})"
    )


def ledger_table(entries: list) -> Table:
    """The promotion ledger, oldest first; the evidence in one line per entry."""
    table = Table(title="promotion ledger")
    for col in ("when (UTC)", "event", "version", "from", "by", "reason", "evidence"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e.at[:19].replace("T", " "),
            e.event,
            str(e.version),
            "" if e.from_version is None else str(e.from_version),
            e.by,
            e.reason,
            _evidence_line(e.evidence),
        )
    return table


def _evidence_line(evidence: dict) -> str:
    if not evidence.get("n"):
        return ""
    n, rate = evidence["n"], evidence.get("rate", {})

    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    p = evidence.get("p_value")
    return (
        f"n {n.get('control')}/{n.get('challenger')}, rate {pct(rate.get('control'))}/"
        f"{pct(rate.get('challenger'))}" + ("" if p is None else f", p={p:.4f}")
    )


def demo_report(result, *, online_sample: list, mlflow_uri: str) -> list:
    """What the demo prints at its end, in order."""
    out: list = [
        etl_table(result.pipeline.etl.to_dict(), reasons=False),  # `mlsys etl` lists them
        online_table(online_sample),
        training_summary(result.pipeline.training),
        served_table(result.served),
    ]
    if result.decay:
        out += [drift_by_feature(result.decay), performance_table(result.decay)]
    out.append(f"retrain job {result.retrain_job} ({result.retrain_reason}): {result.retrain_status}")
    if result.retrain_data:
        out.append(f"the retrain's model: {result.retrain_data}")
    for status in (result.rollout, result.bad_rollout):
        if status:
            out.append(rollout_summary(status))
    if result.ledger:
        out.append(ledger_table(result.ledger))
    out += [
        experiment_summary(result.report),
        f"the whole loop: {sum(result.stages.values()):.0f} s (each stage's time is on its line above)",
        f"API docs: {result.url}/docs   experiment report: {result.url}/experiment/report",
        f"report (drift + A/B, HTML): {result.report_file}",
        f"MLflow UI: mlflow ui --backend-store-uri {mlflow_uri}",
    ]
    if result.dashboard_url:
        out.append(f"Ray dashboard (while this process runs): {result.dashboard_url}")
    return out


def online_table(rows: list[dict]) -> Table:
    """Online feature rows, one per entity, without the row's own time (kept for the TTL)."""
    table = Table(title="online features, as /predict reads them")
    cols = [c for c in (rows[0] if rows else ()) if c != FEATURE_TIMESTAMP]
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in cols))
    return table


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def served_table(served: dict[str, dict[str, int]]) -> Table:
    """Predictions each variant served, per phase of traffic."""
    variants = sorted({v for counts in served.values() for v in counts})
    table = Table(title="predictions served")
    for col in ("traffic", *variants):
        table.add_column(col)
    for phase, counts in served.items():
        table.add_row(phase, *(f"{counts.get(v, 0):,}" for v in variants))
    return table


def drift_by_feature(report: DriftReport) -> Table:
    """A row per feature, each variant's PSI and severity side by side (short `drift_table`)."""
    alert = "[red]ALERT[/]" if report.alert else "ok"
    table = Table(
        title=f"drift vs champion v{report.reference_version} ({alert}, PSI alert > {report.psi_alert})"
    )
    table.add_column("feature")
    for variant, window in report.variants.items():
        table.add_column(f"{variant}: PSI, {window.window} window ({window.n})")
    for name in dict.fromkeys(n for w in report.variants.values() for n in w.features):
        found = [w.features.get(name) for w in report.variants.values()]
        table.add_row(
            name, *("-" if f is None or f.psi is None else f"{f.psi:.3f} {f.severity}" for f in found)
        )
    return table
