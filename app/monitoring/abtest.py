"""A/B statistics as pure functions: what the monitor computes from the variants' outcomes.

The report compares each challenger with the control on a per-request proportion (accuracy
of the predicted label, or the conversion rate of the outcome) with:
- the relative improvement and its confidence interval (delta method on the log ratio);
- a classic two-proportion z-test, trusted only past the minimum sample size of a power analysis;
- an always-valid p-value from the mixture sequential probability ratio test (mSPRT,
  Johari et al. 2017), which stays valid however often the report is looked at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from app.monitoring.estimate import estimates

KEEP_RUNNING, PROMOTE, STOP = "keep running", "promote", "stop"


@dataclass
class VariantStats:
    """What the monitor counted for one variant (the input of the report)."""

    requests: int = 0  # rows answered
    errors: int = 0  # rows its model failed on
    outcomes: int = 0  # predictions with feedback (those a cap left out are in `capped`)
    positives: int = 0  # outcomes equal to 1 (conversions)
    correct: int = 0  # predicted label == outcome
    latency_ms: list[float] = field(default_factory=list)  # a recent sample
    scores: list[float] = field(default_factory=list)  # of predictions with feedback (recent)
    labels: list[int] = field(default_factory=list)
    model_versions: list[int] = field(default_factory=list)
    all_scores: list[float] = field(
        default_factory=list
    )  # of every prediction (recent): label-free estimates
    # A shadow variant only: sums over its predictions paired with the live answer to the same request.
    agreement: dict = field(default_factory=dict)
    producers: dict = field(default_factory=dict)  # outcomes counted per producer
    # Requests that reached the variant, and those it failed on any row: each counts once
    # however many rows it held (the error rate is per request, as its users see it).
    requests_reached: int = 0
    requests_failed: int = 0
    capped: dict = field(default_factory=dict)  # outcomes left out, by the cap's reason
    correct_by_producer: dict = field(default_factory=dict)
    positives_by_producer: dict = field(default_factory=dict)


# Shadow predictions are counted apart from the variant's live ones, under "<variant>:shadow"
# (a variant name has no ":"), so they never count as its live requests.
SHADOW_KEY = ":shadow"
PAIR_SUMS = ("n", "same_label", "abs_diff", "sx", "sy", "sxx", "syy", "sxy")


def add_pair(agreement: dict, *, live_score: float, live_label: int, score: float, label: int) -> None:
    """Count a shadow prediction against the live answer to the same request."""
    values = (1, int(live_label == label), abs(score - live_score), live_score, score)
    values += (live_score * live_score, score * score, live_score * score)
    for key, value in zip(PAIR_SUMS, values, strict=True):
        agreement[key] = agreement.get(key, 0) + value


def agreement_summary(agreement: dict) -> dict:
    """Score correlation, share of equal labels and mean |score difference| with the live answer."""
    n = agreement.get("n", 0)
    if not n:
        return {"paired": 0, "score_correlation": None, "label_agreement": None, "mean_abs_score_diff": None}
    a = {k: agreement[k] / n for k in PAIR_SUMS[1:]}
    var_x, var_y = a["sxx"] - a["sx"] ** 2, a["syy"] - a["sy"] ** 2
    cov = a["sxy"] - a["sx"] * a["sy"]
    corr = cov / math.sqrt(var_x * var_y) if var_x > 1e-12 and var_y > 1e-12 else None
    return {
        "paired": int(n),
        "score_correlation": corr,
        "label_agreement": a["same_label"],
        "mean_abs_score_diff": a["abs_diff"],
    }


def successes(s: VariantStats, metric: str) -> int:
    return s.correct if metric == "accuracy" else s.positives


def relative_lift(x_a: int, n_a: int, x_b: int, n_b: int, *, alpha: float) -> dict:
    """(p_b / p_a - 1) with a (1 - alpha) interval from the delta method on log(p_b / p_a)."""
    if min(n_a, n_b) == 0 or x_a == 0 or x_b == 0:
        return {"lift": None, "ci": [None, None]}
    p_a, p_b = x_a / n_a, x_b / n_b
    se = math.sqrt((1 - p_a) / (n_a * p_a) + (1 - p_b) / (n_b * p_b))
    z = stats.norm.ppf(1 - alpha / 2)
    log_ratio = math.log(p_b / p_a)
    return {"lift": p_b / p_a - 1, "ci": [math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1]}


def two_proportion_test(x_a: int, n_a: int, x_b: int, n_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (None without data or variance)."""
    if min(n_a, n_b) == 0:
        return None
    pooled = (x_a + x_b) / (n_a + n_b)
    var = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if var == 0:
        return None
    z = (x_b / n_b - x_a / n_a) / math.sqrt(var)
    return float(2 * stats.norm.sf(abs(z)))


def min_sample_size(p_base: float, mde: float, *, alpha: float, power: float) -> int:
    """Per-variant sample size to detect a relative change `mde` of `p_base` (two-sided)."""
    p_base = min(max(p_base, 1e-3), 1 - 1e-3)
    p_alt = min(max(p_base * (1 + mde), 1e-3), 1 - 1e-3)
    if p_alt == p_base:
        return 10**9
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    p_bar = (p_base + p_alt) / 2
    num = z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(
        p_base * (1 - p_base) + p_alt * (1 - p_alt)
    )
    return math.ceil(num**2 / (p_alt - p_base) ** 2)


def msprt_p_value(x_a: int, n_a: int, x_b: int, n_b: int, *, tau: float) -> float | None:
    """Always-valid p-value of H0: p_a == p_b (normal mixture N(0, tau^2) over the difference)."""
    if min(n_a, n_b) < 2:
        return None
    p_a, p_b = x_a / n_a, x_b / n_b
    var = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
    if var == 0:
        return None
    diff, t2 = p_b - p_a, tau**2
    log_lr = 0.5 * math.log(var / (var + t2)) + diff**2 * t2 / (2 * var * (var + t2))
    return float(min(1.0, math.exp(-log_lr)))


def always_valid_interval(
    x_a: int, n_a: int, x_b: int, n_b: int, *, tau: float, alpha: float
) -> tuple[float | None, float | None]:
    """(1 - alpha) confidence sequence for p_b - p_a from the same normal mixture as
    `msprt_p_value`: the differences its test does not reject, so it covers the truth at every
    look at once (Johari et al. 2017)."""
    if min(n_a, n_b) < 2:
        return None, None
    p_a, p_b = x_a / n_a, x_b / n_b
    var = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
    if var == 0:
        return None, None
    t2 = tau**2
    half = math.sqrt(var * (var + t2) / t2 * (-2 * math.log(alpha) - math.log(var / (var + t2))))
    return p_b - p_a - half, p_b - p_a + half


def auc(scores: list[float], labels: list[int]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(np.asarray(values, dtype=float), [50, 99])
    return {"p50": float(p50), "p99": float(p99)}


def variant_summary(s: VariantStats, metric: str) -> dict:
    def rate(x: int, n: int) -> float | None:
        return x / n if n else None

    by_producer = s.correct_by_producer if metric == "accuracy" else s.positives_by_producer
    return {
        "requests": s.requests,
        "errors": s.errors,
        "error_rate": rate(s.requests_failed, s.requests_reached),
        "requests_reached": s.requests_reached,
        "requests_failed": s.requests_failed,
        "outcomes": s.outcomes,
        "conversion": rate(s.positives, s.outcomes),
        "accuracy": rate(s.correct, s.outcomes),
        "auc": auc(s.scores, s.labels),
        "latency_ms": percentiles(s.latency_ms),
        "model_versions": sorted(set(s.model_versions)),
        "estimated": estimates(s.all_scores),  # from the scores alone (CBPE, estimate.py)
        "metric": metric,
        "rate": rate(successes(s, metric), s.outcomes),
        "outcomes_by_producer": dict(sorted(s.producers.items())),
        "successes_by_producer": dict(sorted(by_producer.items())),
        "capped": dict(sorted(s.capped.items())),
    }


def compare(
    control: VariantStats, challenger: VariantStats, *, metric: str, alpha: float, mde: float, power: float
) -> dict:
    """Challenger vs control: lift with its interval, the tests, and a decision."""
    x_a, n_a = successes(control, metric), control.outcomes
    x_b, n_b = successes(challenger, metric), challenger.outcomes
    lift = relative_lift(x_a, n_a, x_b, n_b, alpha=alpha)
    base = x_a / n_a if n_a else 0.5
    needed = min_sample_size(base, mde, alpha=alpha, power=power)
    p_fixed = two_proportion_test(x_a, n_a, x_b, n_b)
    # The mixture's scale: the absolute effect we care about detecting.
    p_seq = msprt_p_value(x_a, n_a, x_b, n_b, tau=max(base * mde, 1e-3))
    decision, reason = KEEP_RUNNING, f"{min(n_a, n_b)} of {needed} outcomes per variant"
    if p_seq is not None and p_seq < alpha:
        better = (x_b / n_b) > (x_a / n_a)
        decision = PROMOTE if better else STOP
        reason = f"sequential test p={p_seq:.4f} < {alpha}: challenger is {'better' if better else 'worse'}"
    elif min(n_a, n_b) >= needed:
        reason = f"minimum sample reached; no significant difference (sequential p={p_seq})"
    return {
        "relative_improvement": lift["lift"],
        "ci": lift["ci"],
        "min_sample_size": needed,
        "two_proportion_p": p_fixed,
        "two_proportion_valid": min(n_a, n_b) >= needed,
        "sequential_p": p_seq,
        "decision": decision,
        "reason": reason,
    }


def shadow_summary(s: VariantStats, control: VariantStats | None, metric: str) -> dict:
    """A shadow variant: its own summary, its agreement with the live answers and its latency
    next to the control's."""
    out = {**variant_summary(s, metric), **agreement_summary(s.agreement)}
    if control is not None and s.latency_ms and control.latency_ms:
        mine, theirs = percentiles(s.latency_ms), percentiles(control.latency_ms)
        out["latency_diff_ms"] = {k: mine[k] - theirs[k] for k in mine}
    return out


def experiment_report(
    by_variant: dict[str, VariantStats],
    *,
    control: str,
    metric: str,
    alpha: float,
    mde: float,
    power: float,
) -> dict:
    """Per-variant summaries, each other live variant's comparison with the control, and the
    shadow variants (agreement with the live answers, label-free estimates)."""
    shadows = {n[: -len(SHADOW_KEY)]: s for n, s in by_variant.items() if n.endswith(SHADOW_KEY)}
    by_variant = {n: s for n, s in by_variant.items() if not n.endswith(SHADOW_KEY)}
    variants = {name: variant_summary(s, metric) for name, s in sorted(by_variant.items())}
    comparisons = {}
    if control in by_variant:
        for name, s in sorted(by_variant.items()):
            if name != control:
                comparisons[name] = compare(
                    by_variant[control], s, metric=metric, alpha=alpha, mde=mde, power=power
                )
    return {
        "control": control,
        "metric": metric,
        "alpha": alpha,
        "variants": variants,
        "comparisons": comparisons,
        "shadow": {
            name: shadow_summary(s, by_variant.get(control), metric) for name, s in sorted(shadows.items())
        },
    }
