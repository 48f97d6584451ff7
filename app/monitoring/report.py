"""The drift and experiment report as one self-contained HTML page (charts are inline SVG).

Built only from the monitor's drift report and the experiment report (typed messages, or
their JSON read back), so `mlsys report --out report.html` and `GET /report` render the same
page, with matplotlib
drawing the charts: per feature the reference vs the current window on the reference's bins
with PSI and the test, prediction drift over the completed windows, and each variant's
outcome rate with its 95 % interval.
"""

from __future__ import annotations

import html
import io
import threading
from datetime import datetime, timezone

import matplotlib
from scipy import stats

matplotlib.use("Agg")  # no display: render to SVG in memory
import matplotlib.pyplot as plt

from app.features.transforms import bucket_labels
from app.monitoring.experiment import ExperimentReport, format_lift
from app.monitoring.messages import DriftReport, FeatureDrift, HistoryPoint

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1,h2{font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em}
.alert{color:#b00020;font-weight:600}table{border-collapse:collapse}
td,th{padding:.2em .6em;border-bottom:1px solid #eee}"""


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue: inline in HTML


def feature_chart(name: str, feature: FeatureDrift | dict) -> str:
    r = FeatureDrift.model_validate(feature)
    bins = r.bins
    fig, ax = plt.subplots(figsize=(4.2, 2.4))
    if bins:
        labels = bins.categories or _bin_labels(bins.edges)
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], bins.reference, width=0.4, label="reference")
        ax.bar([i + 0.2 for i in x], bins.current, width=0.4, label="current")
        ax.set_xticks(list(x), labels, rotation=60, fontsize=6)
        ax.legend(fontsize=7)
    psi = "n/a" if r.psi is None else f"{r.psi:.3f} ({r.severity})"
    p = r.p_value if r.p_adjusted is None else r.p_adjusted
    test = f", {r.test} {r.statistic:.3f} p={p:.2g}" if r.test else ""
    ax.set_title(f"{name}: PSI {psi}{test}", fontsize=8)
    ax.tick_params(labelsize=6)
    return _svg(fig)


def _bin_labels(edges) -> list[str]:
    return bucket_labels([float(f"{x:.3g}") for x in edges]) if edges else ["all"]


def history_chart(history) -> str:
    history = [HistoryPoint.model_validate(h) for h in history]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for variant in sorted({h.variant for h in history}):
        points = [h for h in history if h.variant == variant]
        times = [datetime.fromtimestamp(h.at, tz=timezone.utc) for h in points]
        ax.plot(times, [h.max_psi or 0 for h in points], marker="o", label=f"{variant}: max feature PSI")
        if any(h.score_psi is not None for h in points):
            ax.plot(
                times,
                [h.score_psi or 0 for h in points],
                marker="x",
                ls="--",
                label=f"{variant}: score PSI",
            )
    ax.axhline(0.2, color="#b00020", lw=0.8, label="alert 0.2")
    ax.set_title("drift over completed windows", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return _svg(fig)


def wilson(x: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (scipy's)."""
    if n == 0:
        return (0.0, 0.0)
    ci = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def experiment_chart(experiment: ExperimentReport | dict) -> str:
    report = ExperimentReport.model_validate(experiment)
    fig, ax = plt.subplots(figsize=(5, 2.6))
    names = list(report.variants)
    rates, lows, highs = [], [], []
    for name in names:
        v = report.variants[name]
        n = v.outcomes
        rate = v.rate or 0.0
        lo, hi = wilson(round(rate * n), n)
        rates.append(rate)
        lows.append(rate - lo)
        highs.append(hi - rate)
    ax.bar(names, rates, yerr=[lows, highs], capsize=6, color="#4c72b0")
    ax.set_title(f"{report.metric} by variant (95 % interval)", fontsize=9)
    ax.set_ylim(0, 1)
    return _svg(fig)


# pyplot keeps global state: two pages rendered at once (the service renders off its event
# loop, in threads) would draw into each other's figures.
_PLOT_LOCK = threading.Lock()


def render(drift: DriftReport | dict, experiment: ExperimentReport | dict) -> str:
    """The page, from `DriftMonitor.drift()` and `DriftMonitor.report()` (or their JSON)."""
    drift, experiment = DriftReport.model_validate(drift), ExperimentReport.model_validate(experiment)
    with _PLOT_LOCK:
        return "".join([*_drift_parts(drift), *_experiment_parts(experiment), "</body></html>"])


def _drift_parts(drift: DriftReport) -> list[str]:
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>mlsys report</title><style>{STYLE}</style>"
        "</head><body><h1>mlsys: drift and experiment report</h1>",
        f"<p>generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; reference: champion "
        f"v{esc(str(drift.reference_version))}; window {drift.window_size} records; "
        f"PSI alert &gt; {drift.psi_alert}</p>",
    ]
    if drift.alert:
        drifted = ", ".join(f"{v}: {', '.join(r.drifted)}" for v, r in drift.variants.items() if r.drifted)
        parts.append(f"<p class='alert'>DRIFT ALERT: {esc(drifted)}</p>")
    for variant, r in drift.variants.items():
        parts.append(
            f"<h2>features, variant {esc(variant)} ({esc(r.window)} window, {r.n} records)</h2>"
            "<div class='grid'>"
        )
        for name, f in r.features.items():
            parts.append(f"<div class='card chart' data-feature='{esc(name)}'>{feature_chart(name, f)}</div>")
        if r.score:
            parts.append(
                "<div class='card chart' data-feature='score'>"
                f"{feature_chart('prediction score', r.score)}</div>"
            )
        parts.append("</div>")
    if drift.history:
        parts.append(
            f"<h2>prediction drift over time</h2><div class='card chart'>{history_chart(drift.history)}</div>"
        )
    return parts


def _experiment_parts(experiment: ExperimentReport) -> list[str]:
    esc = html.escape
    parts = [f"<h2>A/B experiment {esc(experiment.experiment)}</h2>"]
    if not experiment.variants:
        return parts
    parts.append(
        f"<div class='card chart'>{experiment_chart(experiment)}</div><table><tr><th>variant</th>"
        "<th>requests</th><th>outcomes</th><th>rate</th><th>vs control</th><th>sequential p</th>"
        "<th>decision</th></tr>"
    )
    for name, v in experiment.variants.items():
        c = experiment.comparisons.get(name)
        seq = "-" if c is None or c.sequential_p is None else f"{c.sequential_p:.3g}"
        rate = "-" if v.rate is None else f"{v.rate:.3f}"
        decision = esc(c.decision) if c else "(control)"
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{v.requests}</td><td>{v.outcomes}</td>"
            f"<td>{rate}</td><td>{format_lift(c)}</td><td>{seq}</td><td>{decision}</td></tr>"
        )
    parts.append("</table>")
    return parts
