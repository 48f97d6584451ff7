"""What the rollout controller (rollout_controller.py) hands the decision core (pure): its policy
from the settings, and the report read for the shadow phase - the challenger's shadow counts as an
arm of their own, its agreement with the live answers - and the counts the arms start from.
"""

from __future__ import annotations

from app.config import AppConfig
from app.monitoring import rollout
from app.monitoring.abtest import SHADOW_KEY
from app.monitoring.experiment import ExperimentReport
from app.registry.registry import CHALLENGER
from app.serving.rollout_evidence import counts, producer_successes, producers

# What the rollout reads of the challenger in shadow (its evidence for going live).
SHADOW_VIEW = (
    "paired",
    "score_correlation",
    "label_agreement",
    "mean_abs_score_diff",
    "latency_diff_ms",
    "estimated",
)
# The challenger's shadow predictions as an arm of their own (as the monitor counts them).
SHADOW_ARM = CHALLENGER + SHADOW_KEY


def policy(cfg: AppConfig) -> rollout.Policy:
    """The decision core's policy from the settings (`rollout`, the experiment's test, the SLO)."""
    r, exp = cfg.rollout, cfg.serve.experiment
    return rollout.Policy(
        steps=tuple(s / 100 for s in r.steps),
        min_outcomes=r.min_outcomes,
        min_minutes=r.min_minutes,
        latency_slack=r.latency_slack,
        slo_p99_ms=cfg.monitor.p99_ms_alert,
        error_slack=r.error_slack,
        min_requests=r.min_requests,
        alpha=exp.alpha,
        mde=exp.mde,
        margin=r.margin,
        mode=r.mode,
        shadow_min_outcomes=r.shadow_min_outcomes,
    )


def shadow_view(report: ExperimentReport) -> dict:
    """The challenger in shadow as the report shows it: agreement with the live answers and
    the label-free estimates (plain values: it is the ledger entry's evidence)."""
    s = report.shadow.get(CHALLENGER)
    shown = s.model_dump(include=set(SHADOW_VIEW)) if s is not None else {}
    return {k: shown.get(k) for k in SHADOW_VIEW}


def with_shadow_arm(report: ExperimentReport) -> ExperimentReport:
    """The report with the challenger's shadow counts as a variant of their own (SHADOW_ARM),
    so the shadow phase reads its arms, caps and producers as the live phase does."""
    shadow = report.shadow.get(CHALLENGER)
    if shadow is None:
        return report
    return report.model_copy(update={"variants": {**report.variants, SHADOW_ARM: shadow}})


def entry_counts(report: ExperimentReport, control: str, challenger: str) -> dict:
    """What the arms count from: the variants' counts, producers and successes at entry."""
    return {
        "control": counts(report, control),
        "challenger": counts(report, challenger),
        "producers": producers(report),
        "successes": producer_successes(report),
    }
