"""In-process doubles of the cluster actors: `.method.remote(...)` answers like a Ray actor
handle (awaitable in an event loop, `.result()` in a constructor), without Ray; and the
messages they exchange, built with test defaults."""

from __future__ import annotations

import asyncio
import concurrent.futures

from app.config import ExperimentConfig
from app.monitoring.experiment import (
    Estimated,
    ExperimentReport,
    Percentiles,
    ShadowSummary,
    VariantSummary,
)


class Reply(concurrent.futures.Future):
    """A finished actor call: awaitable in the event loop, `.result()` in a constructor."""

    def __init__(self, value):
        super().__init__()
        self.set_result(value)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()


class ActorDouble:
    """`double.method.remote(*args)` calls `obj.method(*args)` and returns a Reply."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        method = getattr(self._obj, name)
        return type("Method", (), {"remote": staticmethod(lambda *a, **kw: Reply(method(*a, **kw)))})()


def traffic_record(
    request_id: str,
    *,
    features: dict | None = None,
    at=None,
    experiment: str = "e",
    variant: str = "champion",
    score: float | None = 0.5,
    label: int | None = 1,
    status: str = "ok",
    latency_ms: float = 1.0,
    shadow: bool = False,
):
    """A TrafficRecord as a replica sends it to the monitor (features: the model's inputs)."""
    from datetime import datetime, timezone

    from app.monitoring.records import TrafficRecord

    return TrafficRecord(
        request_id=request_id,
        experiment=experiment,
        variant=variant,
        model_version=1,
        key=request_id,
        score=score,
        label=label,
        latency_ms=latency_ms,
        features=features or {},
        shadow=shadow,
        status=status,
        logged_at=at or datetime.now(timezone.utc),
    )


def window_report(*, n: int = 1000, alert: bool = False, window: str = "complete", features=None):
    """One variant's window report; `features` maps a name to its PSI (numeric, KS tested)."""
    from app.monitoring.messages import FeatureDrift, WindowReport

    features = {
        name: FeatureDrift(kind="numeric", n=n, missing=0, psi=psi, reason=None, test="ks", statistic=psi / 2)
        for name, psi in (features or {"x": 0.5 if alert else 0.01}).items()
    }
    psis = [f.psi for f in features.values()]
    return WindowReport(
        n=n,
        features=features,
        score=None,
        max_psi=max(psis, default=None),
        drifted=tuple(sorted(k for k, f in features.items() if f.psi > 0.2)) if alert else (),
        alert=alert,
        window=window,
    )


def drift_report(variants: dict | None = None, *, dropped: int = 0, history: tuple = ()):
    """The monitor's drift report over these window reports (a calm champion by default)."""
    from app.monitoring.drift_tracker import alerting
    from app.monitoring.messages import DriftReport, RetrainLog, TrafficLogState

    variants = {"champion": window_report()} if variants is None else variants
    return DriftReport(
        reference_version=1,
        window_size=1000,
        psi_alert=0.2,
        alert=alerting(variants),
        variants=variants,
        dropped_records=dropped,
        traffic_log=TrafficLogState(
            dropped_records=dropped, pending_feedback=0, pending_dropped=0, rebuilt=None
        ),
        history=history,
        retrain=RetrainLog(incident_open=False, submitted=(), decisions=()),
    )


def performance_window(window: str = "complete", *, auc: float = 0.7, decayed: bool = False):
    """A variant's labelled window as the monitor reports it (version 3, a learned band)."""
    from app.monitoring.messages import PerformanceWindow

    return PerformanceWindow(
        n=500, model_version=3, auc=auc, log_loss=0.6, calibration_error=0.04, accuracy=0.7,
        estimated_auc=0.71, band="learned", auc_low=0.64, log_loss_high=0.7, reference_auc=0.7,
        decayed=decayed, window=window,
    )  # fmt: skip


SERVED_ROW = {"age": 41, "income": 52000.0, "score": 0.4, "country": "US", "gender": "F"}


class MonitorDouble:
    """The drift monitor as a serving replica sees it: records kept as the log's rows, feedback
    joined once per request id."""

    def __init__(self):
        self.records, self.feedback_seen = [], []

    def ingest(self, batch, dropped):
        self.records += [r.row() for r in batch]
        return len(batch)

    def feedback(self, request_id, label, may_wait=True, *, producer):
        """Like the monitor: known ids join once; an unknown one waits only if it may."""
        if any(rid == request_id for rid, _, _ in self.feedback_seen):
            return "duplicate"
        if not may_wait and not any(r["request_id"] == request_id for r in self.records):
            return "recorded"
        self.feedback_seen.append((request_id, label, producer))
        return "joined"


class OnlineStoreDouble:
    """Feast's online store for two known entities, 1 and 2 (an unknown one has every feature
    missing); `version` is the registry's, which a materialization moves."""

    version = 0

    def __init__(self, cfg):
        from app.features.transforms import feature_spec
        from app.serving.scoring import raw_rows_to_frame

        self.spec = feature_spec(cfg)
        frame = raw_rows_to_frame([SERVED_ROW, {**SERVED_ROW, "age": 70, "country": "DE"}], cfg)
        self.rows = dict(zip([1, 2], frame[self.spec.names].to_dict("records"), strict=True))

    def online_columns(self, ids):
        rows = [self.rows.get(i, dict.fromkeys(self.spec.names)) for i in ids]
        return {name: [r[name] for r in rows] for name in self.spec.names}

    def registry_version(self):
        return self.version

    def follow_registry(self):
        self.followed = self.version  # the registry the replica read last


def variant_summary(v: dict, **shadow) -> VariantSummary | ShadowSummary:
    """A variant's summary as the monitor reports it, with what the rollout reads set."""
    fields = {
        "requests": v.get("requests", 0),
        "errors": v.get("errors", 0),
        "error_rate": None,
        "outcomes": v.get("outcomes", 0),
        "conversion": None,
        "accuracy": v.get("rate"),
        "auc": None,
        "latency_ms": Percentiles(**v.get("latency_ms", {"p50": None, "p99": None})),
        "model_versions": (),
        "estimated": Estimated(accuracy=0.7, auc=None),
        "metric": "accuracy",
        "rate": v.get("rate"),
        "outcomes_by_producer": {"tests": v["outcomes"]} if v.get("outcomes") else {},
        "successes_by_producer": {"tests": round(v["rate"] * v["outcomes"])} if v.get("outcomes") else {},
        "requests_reached": v.get("requests", 0) + v.get("errors", 0),  # `errors`: failed requests
        "requests_failed": v.get("errors", 0),
    }
    if not shadow:
        return VariantSummary(**fields)
    return ShadowSummary(**fields, score_correlation=None, mean_abs_score_diff=None, **shadow)


class ReportingMonitorDouble:
    """The drift monitor as the rollout controller reads it: the experiment report and recent
    p99 built from counts a test sets per variant."""

    def __init__(self):
        self.variants: dict[str, dict] = {}
        self.shadow: dict[str, ShadowSummary] = {}

    def count(self, variant: str, *, outcomes: int, rate: float, requests: int, errors: int = 0, p99=20.0):
        v = self.variants.setdefault(variant, {"outcomes": 0, "rate": 0.0, "requests": 0, "errors": 0})
        successes = v["rate"] * v["outcomes"] + rate * outcomes
        v["outcomes"] += outcomes
        v["rate"] = successes / v["outcomes"] if v["outcomes"] else 0.0
        v["requests"] += requests
        v["errors"] += errors
        v["latency_ms"] = {"p50": p99 / 2, "p99": p99}

    def in_shadow(self, variant: str, *, paired: int, label_agreement: float) -> None:
        self.shadow[variant] = variant_summary({}, paired=paired, label_agreement=label_agreement)

    def recent_p99(self, experiment, variant, last):
        v = self.variants.get(variant)
        return v["latency_ms"]["p99"] if v and last > 0 else None

    def report(self, experiment: ExperimentConfig) -> ExperimentReport:
        return ExperimentReport(
            experiment=experiment.name,
            control=experiment.control,
            metric=experiment.metric,
            alpha=experiment.alpha,
            variants={k: variant_summary(v) for k, v in self.variants.items()},
            comparisons={},
            shadow=dict(self.shadow),
        )
