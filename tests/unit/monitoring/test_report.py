"""The HTML report: rendered from the monitor's typed reports (or their JSON), and loaded by a
real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from app.files import atomic_write_text
from app.model.profile import reference_profile
from app.monitoring import report
from app.monitoring.abtest import VariantStats, experiment_report
from app.monitoring.drift_tracker import DriftTracker, alerting
from app.monitoring.experiment import ExperimentReport
from app.monitoring.messages import DriftReport, HistoryPoint, RetrainLog, TrafficLogState

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def reports() -> tuple[DriftReport, ExperimentReport]:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"income": rng.lognormal(10, 0.5, 5000), "country": rng.choice(["US", "DE"], 5000)})
    profile = {
        **reference_profile(ref, ["income"], ["country"]),
        "score": reference_profile(pd.DataFrame({"s": rng.random(5000)}), ["s"], [])["numeric"]["s"],
    }
    tracker = DriftTracker(window=2000, psi_alert=0.2)
    tracker.follow(3, profile)
    live = pd.DataFrame(
        {
            "variant": "champion",
            "income": rng.lognormal(10.6, 0.5, 2000),
            "country": rng.choice(["US", "MX"], 2000),
            "pred_score": rng.random(2000),
        }
    )
    tracker.add(live.to_dict("records"), now=1.8e9 + 6 * 60)
    earlier = [
        HistoryPoint(
            at=1.8e9 + i * 60, variant="champion", n=2000, max_psi=0.05 * i, score_psi=0.01, drifted=()
        )
        for i in range(6)
    ]
    windows = tracker.windows()
    drift = DriftReport(
        reference_version=tracker.reference_version,
        window_size=2000,
        psi_alert=0.2,
        alert=alerting(windows),
        variants=windows,
        dropped_records=0,
        traffic_log=TrafficLogState(pending_feedback=0, pending_dropped=0, rebuilt=None),
        history=(*earlier, *tracker.history),
        retrain=RetrainLog(incident_open=False, submitted=(), decisions=()),
    )
    stats = {
        "champion": VariantStats(requests=900, outcomes=800, correct=560, positives=300),
        "challenger": VariantStats(requests=100, outcomes=90, correct=70, positives=40),
    }
    experiment = experiment_report(
        stats, control="champion", metric="accuracy", alpha=0.05, mde=0.05, power=0.8
    )
    return drift, ExperimentReport.model_validate({**experiment, "experiment": "exp-1"})


@pytest.fixture
def page(reports):
    return report.render(*reports)


def test_the_page_is_self_contained_with_every_chart(page):
    assert page.count("<svg") == 2 + 1 + 1 + 1  # two features, the score, drift over time, the A/B chart
    assert "DRIFT ALERT" in page and "income" in page and "challenger" in page
    assert re.search(r"""(src|href)=["']https?://""", page) is None  # nothing loaded from elsewhere


def test_the_reports_json_renders_the_same_page(reports, page):
    drift, experiment = reports
    assert drift.alert and drift.variants["champion"].window == "complete"
    from_json = report.render(drift.model_dump(mode="json"), experiment.model_dump(mode="json"))

    def text(html: str) -> str:  # the page less its time stamp and the charts' random SVG ids
        return re.sub(r"<svg.*?</svg>", "<svg/>", re.sub(r"generated [^;]*;", "", html), flags=re.DOTALL)

    assert text(from_json) == text(page) and from_json.count("<svg") == page.count("<svg") == 5


def test_wilson_interval():
    lo, hi = report.wilson(70, 100)
    assert lo == pytest.approx(0.6041, abs=1e-3) and hi == pytest.approx(0.7810, abs=1e-3)


@pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="chromium not installed (CI installs it)"
)
def test_a_headless_browser_loads_the_page_and_finds_the_charts(page, tmp_path):
    assert CHROMIUM, "chromium missing: .ci/run installs Debian's chromium package"
    path = atomic_write_text(tmp_path / "report.html", page)
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count("<svg") == 5, dom[:2000]
    assert dom.count('class="card chart"') == 5


def test_the_terminal_tables_read_the_typed_reports(reports):
    from rich.console import Console

    from app.monitor_views import drift_table, experiment_summary

    drift, experiment = reports
    shown = Console(record=True, width=200)
    shown.print(drift_table(drift))  # `mlsys monitor status`
    shown.print(experiment_summary(experiment))
    text = shown.export_text()
    assert "drift vs champion v3 (ALERT, PSI alert > 0.2)" in text and "complete (2000)" in text
    assert "income" in text and "country" in text and "ks" in text and "chi2" in text
    lift = experiment.comparisons["challenger"].relative_improvement
    assert "experiment exp-1: accuracy" in text and f"{lift:+.1%}" in text and "(control)" in text


def test_the_labelled_windows_table_shows_each_variants_metrics_estimate_and_band():
    from rich.console import Console

    from app.monitor_views import performance_table
    from tests.doubles import drift_report, performance_window

    report = drift_report().model_copy(
        update={
            "performance": {
                "champion": performance_window(auc=0.512, decayed=True),
                "challenger": performance_window("partial", auc=0.731),
            },
            "performance_alert": True,
        }
    )
    shown = Console(record=True, width=200)
    shown.print(performance_table(report))  # `mlsys monitor status`, the demo
    text = shown.export_text()
    assert "labelled performance (DECAYED)" in text and "0.512 decayed" in text and "0.731" in text
    assert "learned: AUC under 0.640" in text and "partial (500)" in text and "0.710" in text
