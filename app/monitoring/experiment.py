"""The experiment report as a typed message: per variant the counts and outcome metrics,
each challenger's comparison with the control, and the variants scored in shadow.

abtest.py computes the statistics; this is the shape they cross the actor boundary in and
leave the service as (`GET /experiment/report` returns it as is).
"""

from __future__ import annotations

from pydantic import Field

from app.monitoring.messages import Message, optional


class Percentiles(Message):
    p50: float | None
    p99: float | None


class Estimated(Message):
    """Outcome metrics estimated from the scores alone (estimate.py), before any label."""

    accuracy: float | None
    auc: float | None


class VariantSummary(Message):
    """What was counted for one variant; rates are None until there is something to divide."""

    requests: int  # rows answered
    errors: int  # rows the variant's model failed on
    error_rate: float | None  # requests_failed / requests_reached
    outcomes: int  # predictions with feedback (none a cap left out)
    conversion: float | None
    accuracy: float | None
    auc: float | None
    latency_ms: Percentiles
    model_versions: tuple[int, ...]
    estimated: Estimated
    metric: str
    rate: float | None  # the experiment's metric
    outcomes_by_producer: dict[str, int] = Field(default_factory=dict)  # who reported the outcomes
    successes_by_producer: dict[str, int] = Field(default_factory=dict)  # by the experiment's metric
    # Requests that reached the variant, each once however many rows it held, and those it
    # failed on any row.
    requests_reached: int = 0
    requests_failed: int = 0
    capped: dict[str, int] = Field(default_factory=dict)  # outcomes left out, by the cap's reason

    @property
    def successes(self) -> int:
        """Outcomes counted as success by the experiment's metric."""
        return round((self.rate or 0.0) * self.outcomes)


class ShadowSummary(VariantSummary):
    """A variant scored on a copy of the traffic, next to the live answers to the same requests."""

    paired: int
    score_correlation: float | None
    label_agreement: float | None
    mean_abs_score_diff: float | None
    latency_diff_ms: Percentiles | None = optional()  # its percentiles minus the control's


class Comparison(Message):
    """A challenger against the control on the experiment's metric."""

    relative_improvement: float | None
    ci: tuple[float | None, float | None]
    min_sample_size: int
    two_proportion_p: float | None
    two_proportion_valid: bool  # the fixed-horizon test, trusted past the minimum sample only
    sequential_p: float | None  # always valid, however often it is read
    decision: str
    reason: str


class ExperimentReport(Message):
    """`GET /experiment/report`."""

    experiment: str
    control: str
    metric: str
    alpha: float
    variants: dict[str, VariantSummary]
    comparisons: dict[str, Comparison]
    shadow: dict[str, ShadowSummary] = Field(default_factory=dict)
    dropped_records: int = 0
    pending_feedback: int = 0
    pending_dropped: int = 0
    generated_at: float | None = None


def format_lift(comparison: Comparison | None) -> str:
    """ "+4.2% [+1.0%, +7.5%]" for a comparison with an interval; "-" otherwise."""
    if comparison is None or comparison.relative_improvement is None:
        return "-"
    low, high = comparison.ci
    return f"{comparison.relative_improvement:+.1%} [{low:+.1%}, {high:+.1%}]"
