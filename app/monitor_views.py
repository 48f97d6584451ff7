"""How the monitor, the experiment and the rollout look in a terminal: drift and labelled
windows, the experiment's variants, the rollout and the promotion ledger (no logic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:  # the rollout's module imports scipy: the CLI stays light
    from app.monitoring.experiment import ExperimentReport
    from app.monitoring.messages import DriftReport
    from app.monitoring.rollout import RolloutStatus


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
