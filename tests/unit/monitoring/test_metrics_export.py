"""The metrics export without Ray: which gauge gets which value, with which tags, from a drift
report; and nothing at all outside a Ray worker."""

from __future__ import annotations

import pytest

from app.monitoring.messages import FeatureDrift
from app.monitoring.metrics_export import MetricsExport
from tests.doubles import drift_report, performance_window, window_report


class Gauge:
    def __init__(self):
        self.values: dict[tuple, float] = {}

    def set(self, value: float, tags: dict | None = None) -> None:
        self.values[tuple(sorted((tags or {}).items()))] = value


class Gauges:
    """MonitorMetrics' gauges, recording what they were set to."""

    built = 0

    def __init__(self):
        Gauges.built += 1
        self.psi, self.ks, self.alert, self.dropped, self.retrains = (Gauge() for _ in range(5))
        self.outcome_auc, self.outcome_log_loss, self.outcome_calibration = Gauge(), Gauge(), Gauge()
        self.estimated_auc, self.auc_band_low, self.decay = Gauge(), Gauge(), Gauge()


def tags(**kv) -> tuple:
    return tuple(sorted(kv.items()))


def test_each_variants_features_alert_and_the_counters_are_exported():
    drifted = window_report(alert=True, features={"income": 0.4, "age": 0.05})
    categorical = FeatureDrift(
        kind="categorical", n=10, missing=0, psi=0.3, reason=None, test="chi2", statistic=9.0
    )
    empty = FeatureDrift(kind="numeric", n=0, missing=0, psi=None, reason="no finite values in the window")
    calm = window_report().model_copy(update={"features": {"country": categorical, "age": empty}})
    report = drift_report({"champion": drifted, "challenger": calm}, dropped=7)
    export = MetricsExport(make_metrics=Gauges, enabled=lambda: True)
    assert export.export(report, retrains=2)
    m = export.metrics
    assert m.psi.values == {
        tags(variant="champion", feature="income"): 0.4,
        tags(variant="champion", feature="age"): 0.05,
        tags(variant="challenger", feature="country"): 0.3,
    }
    assert m.ks.values == {
        tags(variant="champion", feature="income"): pytest.approx(0.2),
        tags(variant="champion", feature="age"): pytest.approx(0.025),
    }  # KS of numeric features only; a feature without a PSI sets nothing
    assert m.alert.values == {tags(variant="champion"): 1.0, tags(variant="challenger"): 0.0}
    assert m.dropped.values == {(): 7} and m.retrains.values == {(): 2}


def test_the_gauges_are_built_once():
    Gauges.built = 0
    export = MetricsExport(make_metrics=Gauges, enabled=lambda: True)
    export.export(drift_report(), retrains=0)
    export.export(drift_report(), retrains=1)
    assert Gauges.built == 1 and export.metrics.retrains.values == {(): 1}


def test_outside_a_ray_worker_nothing_is_exported():
    Gauges.built = 0
    export = MetricsExport(make_metrics=Gauges, enabled=lambda: False)
    assert not export.export(drift_report(), retrains=0) and Gauges.built == 0


def test_each_variants_last_complete_labelled_window_is_exported_beside_its_estimate():
    report = drift_report().model_copy(
        update={
            "performance": {
                "champion": performance_window("complete", auc=0.55, decayed=True),
                "challenger": performance_window("partial", auc=0.9, decayed=False),  # not judged yet
            }
        }
    )
    export = MetricsExport(make_metrics=Gauges, enabled=lambda: True)
    export.export(report, retrains=0)
    m, champion = export.metrics, tags(variant="champion")
    assert m.outcome_auc.values == {champion: 0.55} and m.estimated_auc.values == {champion: 0.71}
    assert m.outcome_log_loss.values == {champion: 0.6} and m.outcome_calibration.values == {champion: 0.04}
    assert m.auc_band_low.values == {champion: 0.64} and m.decay.values == {champion: 1.0}
