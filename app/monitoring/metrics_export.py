"""MetricsExport: the drift report as the monitor's Prometheus gauges (metrics.py names them).

Per variant and feature the PSI (and the KS statistic of numeric features), per variant the
alert state and the last complete labelled window (AUC, log loss, calibration error, the
label-free AUC estimate, the band and its decay), and the dropped records and submitted
retrains. The gauges exist only inside a Ray worker: a monitor used as a plain object (tests,
scripts) exports nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from app.monitoring.messages import COMPLETE, DriftReport, PerformanceWindow, WindowReport


def _ray_running() -> bool:
    import ray

    return ray.is_initialized()


def _monitor_metrics():
    from app.monitoring.metrics import MonitorMetrics

    return MonitorMetrics()


class MetricsExport:
    """`make_metrics` builds the gauges (MonitorMetrics) on the first export; `enabled` says
    whether there is anything to export to."""

    def __init__(self, make_metrics: Callable | None = None, enabled: Callable[[], bool] | None = None):
        self.make_metrics = make_metrics or _monitor_metrics
        self.enabled = enabled or _ray_running
        self.metrics = None

    def export(self, report: DriftReport, *, retrains: int) -> bool:
        """Set every gauge from `report`; False when there is nowhere to export."""
        if not self.enabled():
            return False
        if self.metrics is None:
            self.metrics = self.make_metrics()
        for variant, window in report.variants.items():
            self._window(variant, window)
        for variant, labelled in report.performance.items():
            if labelled.window == COMPLETE:
                self._labelled(variant, labelled)
        self.metrics.dropped.set(report.dropped_records)
        self.metrics.retrains.set(retrains)
        return True

    def _window(self, variant: str, window: WindowReport) -> None:
        for name, f in window.features.items():
            tags = {"variant": variant, "feature": name}
            if f.psi is not None:
                self.metrics.psi.set(f.psi, tags=tags)
            if f.test == "ks":
                self.metrics.ks.set(f.statistic, tags=tags)
        self.metrics.alert.set(float(window.alert), tags={"variant": variant})

    def _labelled(self, variant: str, w: PerformanceWindow) -> None:
        tags = {"variant": variant}
        values = (
            (self.metrics.outcome_auc, w.auc),
            (self.metrics.outcome_log_loss, w.log_loss),
            (self.metrics.outcome_calibration, w.calibration_error),
            (self.metrics.estimated_auc, w.estimated_auc),
            (self.metrics.auc_band_low, w.auc_low),
        )
        for gauge, value in values:
            if value is not None:
                gauge.set(value, tags=tags)
        self.metrics.decay.set(float(w.decayed), tags=tags)
