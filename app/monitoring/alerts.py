"""The Prometheus alert rules and their promtool unit test, rendered from `cfg.monitor`.

The thresholds live in the config only: `mlsys alerts --out DIR` writes both files, and the
committed deployments/prometheus/{alerts,alerts_test}.yml are this module's output for the
default config (a unit test holds them equal). The test's input series and expected alerts
are derived from the same thresholds, so `promtool test rules` fires and clears each alert
for any config that passes `check_thresholds`.
"""

from __future__ import annotations

from app.config import MonitorConfig
from app.monitoring import metrics
from app.monitoring.prom_format import humanize, humanize_duration, humanize_percentage

RULES_FILE = "alerts.yml"
TEST_FILE = "alerts_test.yml"

RUNBOOKS = {
    "p99": "README.md#operations: check replicas (serve status), scale out, or roll back",
    "qps": "README.md#operations: clients failing upstream? ingress healthy?",
    "errors": "README.md#operations: replica logs; roll back a new champion",
    "psi": "README.md#operations: mlsys monitor status; the retrain controller acts on its own",
    "decay": "README.md#operations: mlsys monitor status; the outcomes disagree, a retrain follows",
}

# Ray exports every metric with the `ray_` prefix, and counters with `_total`.
_NAMES = {
    "requests": f"ray_{metrics.REQUESTS}_total",
    "errors": f"ray_{metrics.ERRORS}_total",
    "latency_bucket": f"ray_{metrics.LATENCY}_bucket",
    "psi_metric": f"ray_{metrics.PSI}",
    "decay_metric": f"ray_{metrics.DECAY}",
}

# `%(name)s` placeholders, because the Go templates in the annotations are full of braces.
_RULES = """\
# The five mlsys alerts. Metric names are declared in app/monitoring/metrics.py; Ray exports
# them with the `ray_` prefix (and `_total` on counters).
# Rendered from the config's `monitor` thresholds by app/monitoring/alerts.py:
# change the config and run `mlsys alerts --out deployments/prometheus`, do not edit by hand.
groups:
  - name: mlsys-recording
    rules:
      - record: mlsys:qps:rate5m
        expr: sum(rate(%(requests)s[5m]))
      # Ray exports a counter from its first increment on, so a service that never failed has
      # no error series: without `or vector(0)` its error rate would be "no data", not 0.
      - record: mlsys:errors:rate5m
        expr: sum(rate(%(errors)s[5m])) or vector(0)
      - record: mlsys:latency_p99:5m
        expr: histogram_quantile(0.99, sum by (le) (rate(%(latency_bucket)s[5m])))
  - name: mlsys-alerts
    rules:
      - alert: MlsysLatencyP99High
        expr: mlsys:latency_p99:5m > %(p99_s)s
        for: 5m
        labels: {severity: page}
        annotations:
          summary: "P99 prediction latency {{ $value | humanizeDuration }} is over %(p99_ms)s ms"
          runbook: "%(runbook_p99)s"
      # Baseline: the QPS's own 6-hour moving average. A moving average follows daily cycles
      # slowly enough to catch a sudden drop, and needs no week of history (as "the same hour a
      # week ago" would) for a new service. Quiet services (< 1 req/s) do not alert.
      - alert: MlsysQpsDrop
        expr: mlsys:qps:rate5m < %(qps_factor)s * avg_over_time(mlsys:qps:rate5m[6h]) and avg_over_time(mlsys:qps:rate5m[6h]) > 1
        for: 10m
        labels: {severity: warning}
        annotations:
          summary: "QPS {{ $value | humanize }} is below %(qps_pct)s %% of its 6-hour average"
          runbook: "%(runbook_qps)s"
      - alert: MlsysErrorRateHigh
        expr: mlsys:errors:rate5m / (mlsys:qps:rate5m + mlsys:errors:rate5m) > %(error_rate)s
        for: 5m
        labels: {severity: page}
        annotations:
          summary: "{{ $value | humanizePercentage }} of predictions fail (over %(error_pct)s %%)"
          runbook: "%(runbook_errors)s"
      - alert: MlsysFeatureDrift
        expr: max by (feature) (%(psi_metric)s) > %(psi)s
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: "feature {{ $labels.feature }} PSI {{ printf \\"%%.2f\\" $value }} is over %(psi)s"
          runbook: "%(runbook_psi)s"
      # Set by the monitor when a variant's last labelled window fell under its model version's
      # band (monitor.performance_band): the outcomes say the model got worse, whatever the inputs.
      - alert: MlsysPerformanceDecay
        expr: max by (variant) (%(decay_metric)s) == 1
        for: 1m
        labels: {severity: warning}
        annotations:
          summary: "variant {{ $labels.variant }}: its last labelled window decayed (AUC under its band)"
          runbook: "%(runbook_decay)s"
"""  # noqa: E501 - the QPS expression reads best on one line

_TEST = """\
# promtool test rules deployments/prometheus/alerts_test.yml: each alert fires, then clears.
# Rendered with alerts.yml by app/monitoring/alerts.py: series and expectations follow the thresholds.
rule_files:
  - alerts.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # 0-20 min: 100 req/s, all under %(fast_ms)s ms; 20-40 min: slow (all %(p99_ms)s-%(slow_ms)s ms).
      - series: '%(latency_bucket)s{le="%(le_fast)s"}'
        values: '0+6000x20 120000x20'
      - series: '%(latency_bucket)s{le="%(p99_s)s"}'
        values: '0+6000x20 120000x20'
      - series: '%(latency_bucket)s{le="%(le_slow)s"}'
        values: '0+6000x40'
      - series: '%(latency_bucket)s{le="+Inf"}'
        values: '0+6000x40'
    alert_rule_test:
      - eval_time: 15m
        alertname: MlsysLatencyP99High
        exp_alerts: []
      - eval_time: 35m
        alertname: MlsysLatencyP99High
        exp_alerts:
          - exp_labels: {severity: page}
            exp_annotations:
              summary: "P99 prediction latency %(p99_seen)s is over %(p99_ms)s ms"
              runbook: "%(runbook_p99)s"
  - interval: 1m
    input_series:
      # 100 req/s for 6 h, then %(qps_low)s req/s for 30 min, then back to 100.
      - series: '%(requests)s{variant="champion",model_version="1"}'
        values: '0+6000x360 2160000+%(qps_low_min)sx30 %(qps_back)s+6000x60'
    alert_rule_test:
      - eval_time: 6h
        alertname: MlsysQpsDrop
        exp_alerts: []
      - eval_time: 6h25m
        alertname: MlsysQpsDrop
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "QPS %(qps_seen)s is below %(qps_pct)s %% of its 6-hour average"
              runbook: "%(runbook_qps)s"
      - eval_time: 7h
        alertname: MlsysQpsDrop
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: '%(requests)s{variant="champion",model_version="1"}'
        values: '0+6000x60'
      # errors: %(err_low_pct)s %% of the requests for 20 min, then %(err_high_pct)s %%, then none again.
      - series: '%(errors)s{variant="champion"}'
        values: '0+%(err_low)sx20 %(err_mid)s+%(err_high)sx20 %(err_end)sx20'
    alert_rule_test:
      - eval_time: 15m
        alertname: MlsysErrorRateHigh
        exp_alerts: []
      - eval_time: 35m
        alertname: MlsysErrorRateHigh
        exp_alerts:
          - exp_labels: {severity: page}
            exp_annotations:
              summary: "%(err_seen)s of predictions fail (over %(error_pct)s %%)"
              runbook: "%(runbook_errors)s"
      - eval_time: 58m
        alertname: MlsysErrorRateHigh
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: '%(psi_metric)s{variant="champion",feature="income"}'
        values: '%(psi_before)sx10 %(psi_high)sx20 %(psi_after)sx20'
      - series: '%(psi_metric)s{variant="champion",feature="age"}'
        values: '%(psi_other)sx50'
    alert_rule_test:
      - eval_time: 9m
        alertname: MlsysFeatureDrift
        exp_alerts: []
      - eval_time: 20m
        alertname: MlsysFeatureDrift
        exp_alerts:
          - exp_labels: {severity: warning, feature: income}
            exp_annotations:
              summary: "feature income PSI %(psi_seen)s is over %(psi)s"
              runbook: "%(runbook_psi)s"
      - eval_time: 45m
        alertname: MlsysFeatureDrift
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: '%(decay_metric)s{variant="champion"}'
        values: '0x10 1x20 0x20'
      - series: '%(decay_metric)s{variant="challenger"}'
        values: '0x50'
    alert_rule_test:
      - eval_time: 9m
        alertname: MlsysPerformanceDecay
        exp_alerts: []
      - eval_time: 20m
        alertname: MlsysPerformanceDecay
        exp_alerts:
          - exp_labels: {severity: warning, variant: champion}
            exp_annotations:
              summary: "variant champion: its last labelled window decayed (AUC under its band)"
              runbook: "%(runbook_decay)s"
      - eval_time: 45m
        alertname: MlsysPerformanceDecay
        exp_alerts: []
"""

_PER_MINUTE = 6000  # the test traffic: 100 req/s, scraped every minute


def render(monitor: MonitorConfig) -> dict[str, str]:
    """File name -> text: the alert rules and their promtool test, for these thresholds."""
    values = {**_NAMES, **{f"runbook_{k}": v for k, v in RUNBOOKS.items()}, **_thresholds(monitor)}
    return {RULES_FILE: _RULES % values, TEST_FILE: _TEST % {**values, **_test_values(monitor)}}


def _thresholds(m: MonitorConfig) -> dict[str, str]:
    return {
        "p99_s": _num(m.p99_ms_alert / 1000),
        "p99_ms": _num(m.p99_ms_alert),
        "qps_factor": _num(1 - m.qps_drop_alert),
        "qps_pct": _num((1 - m.qps_drop_alert) * 100),
        "error_rate": _num(m.error_rate_alert),
        "error_pct": _num(m.error_rate_alert * 100),
        "psi": _num(m.psi_alert),
    }


def _test_values(m: MonitorConfig) -> dict[str, str]:
    """Series on both sides of each threshold, and the annotations Prometheus will render."""
    p99 = m.p99_ms_alert / 1000
    # Fast: every request in the bucket up to half the threshold. Slow: every request between
    # the threshold and 5x it, where histogram_quantile interpolates the P99 to 4.96x.
    le_fast, le_slow = _num(p99 / 2), _num(p99 * 5)
    lo, hi = float(_num(p99)), float(le_slow)
    # 62.5 % of the alert level (50 req/s for a 20 % drop): well under it even after the
    # drop itself has pulled the 6-hour average down; two digits keep the QPS readable.
    qps_low = float(f"{62.5 * (1 - m.qps_drop_alert):.2g}")
    qps_low_min = float(_num(qps_low * 60))
    # Errors per minute against 6000 requests: a tenth of the alert rate, then a rate whose
    # share errors / (requests + errors) is clearly over it (5x; more for a high threshold).
    rate = m.error_rate_alert
    err_low = float(_num(_PER_MINUTE * rate / 10))
    err_high = float(_num(_PER_MINUTE * max(5 * rate, 2 * rate / (1 - rate))))
    psi_high = float(_num(m.psi_alert * 3))
    return {
        "le_fast": le_fast,
        "le_slow": le_slow,
        "fast_ms": _num(p99 / 2 * 1000),
        "slow_ms": _num(p99 * 5 * 1000),
        "p99_seen": humanize_duration(lo + (hi - lo) * 0.99),
        "qps_low": _num(qps_low),
        "qps_low_min": _num(qps_low_min),
        "qps_back": _num(2160000 + 30 * qps_low_min),
        "qps_seen": humanize(qps_low_min / 60),
        "err_low": _num(err_low),
        "err_mid": _num(20 * err_low),
        "err_high": _num(err_high),
        "err_end": _num(20 * err_low + 20 * err_high),
        "err_low_pct": f"{err_low / _PER_MINUTE * 100:.4g}",
        "err_high_pct": f"{err_high / _PER_MINUTE * 100:.4g}",
        "err_seen": humanize_percentage((err_high / 60) / (_PER_MINUTE / 60 + err_high / 60)),
        "psi_before": _num(m.psi_alert / 4),
        "psi_high": _num(psi_high),
        "psi_after": _num(m.psi_alert / 5),
        "psi_other": _num(m.psi_alert / 20),
        "psi_seen": f"{psi_high:.2f}",  # the annotation's printf "%.2f"
    }


def _num(x: float) -> str:
    """A threshold as people write it: 0.1, not 0.1000000000000001 nor 1e-01."""
    return f"{x:.15g}"
