"""The monitor's answers as typed messages: the drift report, the retrain decisions, the
traffic log's housekeeping and a config reload's result.

They cross the actor boundary as these frozen models (Ray pickles them) and leave the service
as their JSON (`GET /monitor/drift` returns a `DriftReport` as is). A renamed field breaks its
readers at once instead of a key silently going missing; a reader that holds the JSON instead
(the HTTP client, a notebook) gets the model back with `model_validate`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

COMPLETE, PARTIAL = "complete", "partial"


def _absent(value: object) -> bool:
    return value is None


def optional():
    """A field some reports lack: left out of the JSON when absent, as the report left it out."""
    return Field(default=None, exclude_if=_absent)


class Message(BaseModel):
    """Frozen, and strict about its fields: an unknown key is an error, not a silent extra."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Bins(Message):
    """A feature's distribution on the reference's bins: the edges (numeric) or the categories."""

    reference: tuple[float, ...]
    current: tuple[float, ...]
    edges: tuple[float, ...] | None = optional()
    categories: tuple[str, ...] | None = optional()


class FeatureDrift(Message):
    """One feature (or the score) in one window against the reference (drift.py's statistics).
    `psi` is None with a `reason` when there is nothing to compare."""

    kind: Literal["numeric", "categorical"]
    n: int
    missing: int
    psi: float | None
    reason: str | None
    severity: str | None = optional()
    nonfinite: int | None = optional()  # numeric features only
    unseen: int | None = optional()  # categorical: values the reference never saw
    bins: Bins | None = optional()
    test: Literal["ks", "chi2"] | None = optional()
    statistic: float | None = optional()
    p_value: float | None = optional()
    p_adjusted: float | None = optional()  # Benjamini-Hochberg over the window's features
    alerting: bool | None = optional()  # False: a calendar feature, shown but never alerting


class WindowReport(Message):
    """One variant's window: the last complete one, or the partial one before any completed."""

    n: int
    features: dict[str, FeatureDrift]
    score: FeatureDrift | None
    max_psi: float | None
    drifted: tuple[str, ...]
    alert: bool
    window: Literal["complete", "partial"]


class HistoryPoint(Message):
    """A completed window's headline numbers, for drift over time."""

    at: float
    variant: str
    n: int
    max_psi: float | None
    score_psi: float | None
    drifted: tuple[str, ...]


class PerformanceWindow(Message):
    """One variant's labelled outcomes in a window (performance.py): the last complete window,
    or the partial one before any. A complete window is judged against its model version's
    band (bands.py); `band` None: the version has no holdout metrics to judge by."""

    n: int
    model_version: int | None
    auc: float | None
    log_loss: float | None
    calibration_error: float | None
    accuracy: float | None
    estimated_auc: float | None  # the label-free estimate from the same scores (estimate.py)
    band: Literal["learned", "fixed"] | None
    auc_low: float | None
    log_loss_high: float | None
    reference_auc: float | None  # the version's holdout AUC
    decayed: bool
    window: Literal["complete", "partial"]


class PerformancePoint(Message):
    """A completed labelled window's headline numbers, for performance over time."""

    at: float
    variant: str
    model_version: int | None
    n: int
    auc: float | None
    log_loss: float | None
    decayed: bool


class RetrainDecision(Message):
    """One look of the retrain controller: what triggered (None: nothing) and why."""

    at: float
    trigger: Literal["drift", "decay", "schedule"] | None
    reason: str
    job_id: str | None


class RetrainLog(Message):
    """The controller's recent past: the open incident, the last submissions and decisions."""

    incident_open: bool
    submitted: tuple[RetrainDecision, ...]
    decisions: tuple[RetrainDecision, ...]


class Housekeeping(Message):
    """The traffic log's housekeeping counters (what `maintain` returns)."""

    unreadable_files: int = 0
    expired_hours: int = 0
    compacted_files: int = 0
    dropped_records: int = 0  # records replicas dropped before they reached the monitor


class Rebuilt(Message):
    """How the running monitor's state was rebuilt at its start."""

    snapshot: bool  # from a snapshot plus the files it does not cover (else the whole log)
    files_read: int
    records_read: int


class TrafficLogState(Housekeeping):
    """The housekeeping counters with the feedback waiting for its prediction."""

    pending_feedback: int
    pending_dropped: int
    rebuilt: Rebuilt | None


class DriftReport(Message):
    """`GET /monitor/drift`: per variant the window's drift, the alert, drift over time and
    the retrain controller's recent decisions."""

    reference_version: int | None
    window_size: int
    psi_alert: float
    alert: bool  # a complete window of some variant drifted
    variants: dict[str, WindowReport]
    dropped_records: int
    traffic_log: TrafficLogState
    history: tuple[HistoryPoint, ...]
    retrain: RetrainLog
    # The labelled side: per variant its outcomes' window, and whether one decayed.
    performance: dict[str, PerformanceWindow] = Field(default_factory=dict)
    performance_alert: bool = False
    performance_history: tuple[PerformancePoint, ...] = ()
    psi_band: Literal["learned", "fixed"] = "fixed"  # what the features' PSI is judged by


class CheckResult(Message):
    """One housekeeping check: the drift report it judged and the retrain decision it took."""

    drift: DriftReport
    decision: RetrainDecision


class ReloadResult(Message):
    """The `monitor` and `retrain` settings a reload changed, as "section.key" -> new value."""

    changed: dict[str, Any]

    def __str__(self) -> str:
        return str(self.changed)
