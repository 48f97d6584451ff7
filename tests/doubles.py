"""In-process doubles of the cluster actors: `.method.remote(...)` answers like a Ray actor
handle (awaitable in an event loop, `.result()` in a constructor), without Ray; and the
messages they exchange, built with test defaults."""

from __future__ import annotations

import asyncio
import concurrent.futures


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
        return type("Method", (), {"remote": staticmethod(lambda *a: Reply(method(*a)))})()


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


def drift_report(variants: dict | None = None, *, dropped: int = 0):
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
        history=(),
        retrain=RetrainLog(incident_open=False, submitted=(), decisions=()),
    )


SERVED_ROW = {"age": 41, "income": 52000.0, "score": 0.4, "country": "US", "gender": "F"}


class MonitorDouble:
    """The drift monitor as a serving replica sees it: records kept as the log's rows, feedback
    joined once per request id."""

    def __init__(self):
        self.records, self.feedback_seen = [], []

    def ingest(self, batch, dropped):
        self.records += [r.row() for r in batch]
        return len(batch)

    def feedback(self, request_id, label, may_wait=True):
        """Like the monitor: known ids join once; an unknown one waits only if it may."""
        if any(rid == request_id for rid, _ in self.feedback_seen):
            return "duplicate"
        if not may_wait and not any(r["request_id"] == request_id for r in self.records):
            return "recorded"
        self.feedback_seen.append((request_id, label))
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
