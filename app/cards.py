"""The model card of one registered version (`mlsys models show N`): what it is, how it scored,
why the gate let it in, where it came from, and which features its scores lean on."""

from __future__ import annotations

from rich.table import Table

TOP_FEATURES = 15  # a card lists the features that matter, not every column of a wide data set


def model_card(version: int, aliases: tuple[str, ...], metrics: dict, lineage: dict, family: str) -> list:
    """Renderables for one version: a summary table and its feature importance."""
    summary = Table(title=f"version {version}", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("")
    summary.add_row("aliases", ", ".join(aliases) or "-")
    summary.add_row("family", family)
    for key in ("auc", "log_loss", "accuracy", "brier"):
        value = metrics.get("holdout", {}).get(key)
        if value is not None:
            summary.add_row(f"holdout {key}", f"{value:.4f}")
    hgb = metrics.get("baseline_hgb", {}).get("auc")
    if hgb is not None:
        summary.add_row("HistGradientBoosting AUC", f"{hgb:.4f} (same split)")
    gate = metrics.get("gate")
    if gate:
        summary.add_row("gate", f"{'passed' if gate.get('passed') else 'refused'}: {gate.get('reason', '')}")
    for key, value in sorted(lineage.items()):
        summary.add_row(f"lineage {key}", str(value))
    return [summary, importance_table(metrics.get("importance", {}))]


def importance_table(importance: dict[str, float]) -> Table | str:
    """Features by mean absolute contribution to the logit on the holdout, largest first."""
    if not importance:
        return "no feature importance stored (a version registered before explanations)"
    table = Table(title="feature importance (mean |contribution| to the logit, holdout)")
    table.add_column("feature")
    table.add_column("importance", justify="right")
    table.add_column("share", justify="right")
    total = sum(importance.values()) or 1.0
    ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)
    for name, value in ranked[:TOP_FEATURES]:
        table.add_row(name, f"{value:.4f}", f"{value / total:.0%}")
    if len(ranked) > TOP_FEATURES:
        table.add_row(f"... {len(ranked) - TOP_FEATURES} more", "", "")
    return table
