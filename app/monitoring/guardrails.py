"""The rollout's evidence and guardrails (pure): what the decision core (rollout.py) reads of the
control's and the challenger's arms - success rates, the always-valid test and interval, p99
latency, error rates - and whether they show significant harm or breach a guardrail.

Latency and error rate are judged once a variant has `min_requests` requests; significant harm
(the challenger worse by the sequential test at `alpha`) is judged at any count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.monitoring.abtest import always_valid_interval, msprt_p_value

if TYPE_CHECKING:  # rollout.py imports this module
    from app.monitoring.rollout import Arm, Policy


def evidence(policy: Policy, control: Arm, challenger: Arm) -> dict:
    """What a decision reads of the two arms (plain values: it is the ledger entry's evidence)."""
    rate_a = control.successes / control.outcomes if control.outcomes else None
    rate_b = challenger.successes / challenger.outcomes if challenger.outcomes else None
    tau = max((rate_a or 0.5) * policy.mde, 1e-3)
    args = (control.successes, control.outcomes, challenger.successes, challenger.outcomes)
    return {
        "n": {"control": control.outcomes, "challenger": challenger.outcomes},
        "rate": {"control": rate_a, "challenger": rate_b},
        "diff": (rate_b - rate_a) if rate_a is not None and rate_b is not None else None,
        "p_value": msprt_p_value(*args, tau=tau),
        "interval": list(always_valid_interval(*args, tau=tau, alpha=policy.alpha)),
        "p99_ms": {"control": control.p99_ms, "challenger": challenger.p99_ms},
        "error_rate": {"control": error_rate(control), "challenger": error_rate(challenger)},
    }


def error_rate(arm: Arm) -> float | None:
    """Failed requests per request: a batch that failed on one row counts once, as its caller saw."""
    return arm.errors / arm.requests if arm.requests else None


def harm(policy: Policy, evidence: dict) -> str | None:
    """Significant harm on the experiment's metric by the always-valid test, if shown."""
    p = evidence["p_value"]
    if p is not None and p < policy.alpha and evidence["diff"] is not None and evidence["diff"] < 0:
        return f"harm: challenger worse, sequential p={p:.4f} < {policy.alpha}"
    return None


def guardrail_breach(policy: Policy, control: Arm, challenger: Arm, evidence: dict) -> str | None:
    """Why the challenger must roll back now (harm, latency, errors), or None while all hold."""
    shown = harm(policy, evidence)
    if shown:
        return shown
    if challenger.requests < policy.min_requests:
        return None  # a p99 or an error rate of a handful of requests says nothing yet
    judged = control.requests >= policy.min_requests
    p99_b, p99_a = challenger.p99_ms, control.p99_ms if judged else None
    if p99_b is not None and p99_b > policy.slo_p99_ms:
        return f"latency: challenger p99 {p99_b:.1f} ms over the SLO {policy.slo_p99_ms:g} ms"
    if p99_b is not None and p99_a is not None and p99_b > p99_a * (1 + policy.latency_slack):
        return (
            f"latency: challenger p99 {p99_b:.1f} ms > control {p99_a:.1f} ms x {1 + policy.latency_slack:g}"
        )
    err_b, err_a = evidence["error_rate"]["challenger"], evidence["error_rate"]["control"]
    err_a = err_a if judged else None
    if err_b is not None and err_b > (err_a or 0.0) + policy.error_slack:
        return f"errors: challenger {err_b:.2%} > control {err_a or 0:.2%} + {policy.error_slack:.2%}"
    return None
