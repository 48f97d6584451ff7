"""What the rollout reads of the monitor's experiment report: a variant's counts, and who reported
its outcomes, since the challenger went live (pure; the controller keeps the counts at entry).

The arms are capped: no producer counts for more than `rollout.max_producer_share` of an arm's
outcomes since entry once more than one reported (the monitor already left out what one client
key reported beyond `rollout.max_outcomes_per_key`); what either cap left out is evidence."""

from __future__ import annotations

from dataclasses import replace

from app.monitoring import rollout
from app.monitoring.counts import KEY_CAP
from app.monitoring.experiment import ExperimentReport

COUNTED = ("outcomes", "successes", "requests", "errors")
PRODUCER_CAP = "producer"  # the reason an outcome is left out: its producer's share is full


def counts(report: ExperimentReport, variant: str) -> dict:
    """What the monitor counted for a variant so far (successes by the experiment's metric;
    requests once each, however many rows they held), as the state file keeps it."""
    v = report.variants.get(variant)
    if v is None:
        return {**dict.fromkeys(COUNTED, 0), KEY_CAP: 0}
    return {
        "outcomes": v.outcomes,
        "successes": v.successes,
        "requests": v.requests_reached,
        "errors": v.requests_failed,
        KEY_CAP: v.capped.get(KEY_CAP, 0),
    }


def _since(report: ExperimentReport, field: str, at_entry: dict | None) -> dict[str, dict[str, int]]:
    before = at_entry or {}
    return {
        name: {
            p: n - before.get(name, {}).get(p, 0)
            for p, n in getattr(v, field).items()
            if n > before.get(name, {}).get(p, 0)
        }
        for name, v in report.variants.items()
    }


def producers(report: ExperimentReport, at_entry: dict | None = None) -> dict[str, dict[str, int]]:
    """Who reported the outcomes behind a decision, per variant: those counted since the
    challenger went live (`at_entry`: the counts then), as the arms are (the ledger's evidence)."""
    return _since(report, "outcomes_by_producer", at_entry)


def producer_successes(report: ExperimentReport, at_entry: dict | None = None) -> dict[str, dict[str, int]]:
    """The successes among those outcomes, per variant and producer (the producer cap keeps
    each producer's own success rate)."""
    return _since(report, "successes_by_producer", at_entry)


def arm(now: dict, at_entry: dict | None, p99_ms: float | None = None) -> rollout.Arm:
    """A variant's counts since the challenger entered (and the p99 of those requests)."""
    base = at_entry or {}
    return rollout.Arm(**{k: max(now[k] - base.get(k, 0), 0) for k in COUNTED}, p99_ms=p99_ms)


def capped_arm(
    since: rollout.Arm, outcomes: dict[str, int], successes: dict[str, int], share: float
) -> tuple[rollout.Arm, int]:
    """The arm with the producer share cap applied to its outcomes since entry (`outcomes` and
    `successes` per producer), and how many outcomes the cap left out."""
    n, wins, capped = rollout.cap_producers(outcomes, successes, share)
    if not capped:
        return since, 0
    return replace(since, outcomes=n, successes=min(wins, n)), capped


def key_capped(now: dict, at_entry: dict | None) -> int:
    """Outcomes the per-key cap left out of a variant since the challenger entered."""
    return max(now.get(KEY_CAP, 0) - (at_entry or {}).get(KEY_CAP, 0), 0)
