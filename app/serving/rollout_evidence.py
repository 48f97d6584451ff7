"""What the rollout reads of the monitor's experiment report: a variant's counts, and who reported
its outcomes, since the challenger went live (pure; the controller keeps the counts at entry)."""

from __future__ import annotations

from app.monitoring import rollout
from app.monitoring.experiment import ExperimentReport

COUNTED = ("outcomes", "successes", "requests", "errors")


def counts(report: ExperimentReport, variant: str) -> dict:
    """What the monitor counted for a variant so far (successes by the experiment's metric),
    as the state file keeps it."""
    v = report.variants.get(variant)
    if v is None:
        return dict.fromkeys(COUNTED, 0)
    return {"outcomes": v.outcomes, "successes": v.successes, "requests": v.requests, "errors": v.errors}


def producers(report: ExperimentReport, at_entry: dict | None = None) -> dict[str, dict[str, int]]:
    """Who reported the outcomes behind a decision, per variant: those counted since the
    challenger went live (`at_entry`: the counts then), as the arms are (the ledger's evidence)."""
    before = at_entry or {}
    return {
        name: {
            p: n - before.get(name, {}).get(p, 0)
            for p, n in v.outcomes_by_producer.items()
            if n > before.get(name, {}).get(p, 0)
        }
        for name, v in report.variants.items()
    }


def arm(now: dict, at_entry: dict | None, p99_ms: float | None = None) -> rollout.Arm:
    """A variant's counts since the challenger entered (and the p99 of those requests)."""
    base = at_entry or {}
    return rollout.Arm(**{k: max(now[k] - base.get(k, 0), 0) for k in COUNTED}, p99_ms=p99_ms)
