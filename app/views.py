"""How results look in a terminal: rich tables and summaries the CLI prints (no logic)."""

from __future__ import annotations

from rich.table import Table

from app.config import FEATURE_TIMESTAMP
from app.monitor_views import (
    drift_by_feature,
    experiment_summary,
    ledger_table,
    performance_table,
    rollout_summary,
)


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
