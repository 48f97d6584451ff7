"""Every Prometheus metric the system exports, declared once.

Replicas use `ray.serve.metrics` (tagged with deployment and replica by Serve), actors use
`ray.util.metrics`; both reach Prometheus through Ray's metrics endpoint (each node's
`metrics_export_port`, listed in the dashboard) with the `ray_` prefix, e.g.
`ray_mlsys_request_latency_seconds_bucket`. The alert rules in
deployments/prometheus/alerts.yml use exactly these names.
"""

from __future__ import annotations

# Seconds; dense below 100 ms, where the P99 alert threshold sits.
LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5]

REQUESTS = "mlsys_requests"  # counter, by variant and model_version
ERRORS = "mlsys_request_errors"  # counter, by variant and status (4xx are not errors)
LATENCY = "mlsys_request_latency_seconds"  # histogram, by variant
DROPPED = "mlsys_traffic_dropped"  # gauge: log records dropped before reaching the monitor
PSI = "mlsys_feature_psi"  # gauge, by variant and feature
KS = "mlsys_feature_ks"  # gauge, by variant and feature
ALERT = "mlsys_drift_alert"  # gauge 0/1, by variant
RETRAINS = "mlsys_retrain_jobs"  # gauge: retrain jobs submitted by the controller
# The last complete labelled window per variant (performance.py); gauges, by variant.
OUTCOME_AUC = "mlsys_outcome_auc"
OUTCOME_LOG_LOSS = "mlsys_outcome_log_loss"
OUTCOME_CALIBRATION = "mlsys_outcome_calibration_error"
ESTIMATED_AUC = "mlsys_estimated_auc"  # the label-free estimate from the same window's scores
AUC_BAND_LOW = "mlsys_outcome_auc_band_low"  # under it the window decayed
DECAY = "mlsys_performance_decay"  # 0/1


class ReplicaMetrics:
    """The ingress replica's request metrics."""

    def __init__(self):
        from ray.serve import metrics

        self.requests = metrics.Counter(REQUESTS, "predictions served", tag_keys=("variant", "model_version"))
        self.errors = metrics.Counter(ERRORS, "predictions that failed (5xx)", tag_keys=("variant",))
        self.latency = metrics.Histogram(
            LATENCY, "prediction latency in the ingress", boundaries=LATENCY_BUCKETS, tag_keys=("variant",)
        )

    def served(self, variant: str, version: int, seconds: float | None) -> None:
        """A row answered; `seconds`: its request's latency, given for a request's first row only."""
        self.requests.inc(tags={"variant": variant, "model_version": str(version)})
        if seconds is not None:
            self.latency.observe(seconds, tags={"variant": variant})

    def failed(self, variant: str) -> None:
        self.errors.inc(tags={"variant": variant})


class MonitorMetrics:
    """The drift monitor's gauges."""

    def __init__(self):
        from ray.util import metrics

        self.psi = metrics.Gauge(
            PSI, "population stability index vs the reference", tag_keys=("variant", "feature")
        )
        self.ks = metrics.Gauge(KS, "KS statistic vs the reference", tag_keys=("variant", "feature"))
        self.alert = metrics.Gauge(
            ALERT, "1 while a feature's PSI is over the alert level", tag_keys=("variant",)
        )
        self.dropped = metrics.Gauge(DROPPED, "traffic records dropped before the monitor")
        self.retrains = metrics.Gauge(RETRAINS, "retrain jobs submitted by the controller")
        by_variant = ("variant",)
        self.outcome_auc = metrics.Gauge(OUTCOME_AUC, "AUC of the last labelled window", tag_keys=by_variant)
        self.outcome_log_loss = metrics.Gauge(
            OUTCOME_LOG_LOSS, "log loss of the last labelled window", tag_keys=by_variant
        )
        self.outcome_calibration = metrics.Gauge(
            OUTCOME_CALIBRATION, "expected calibration error of the last labelled window", tag_keys=by_variant
        )
        self.estimated_auc = metrics.Gauge(
            ESTIMATED_AUC, "AUC estimated from the same window's scores alone", tag_keys=by_variant
        )
        self.auc_band_low = metrics.Gauge(
            AUC_BAND_LOW, "the AUC under which a labelled window decayed", tag_keys=by_variant
        )
        self.decay = metrics.Gauge(DECAY, "1 while the last labelled window decayed", tag_keys=by_variant)
