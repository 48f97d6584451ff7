"""Automatic canary rollout as a pure decision core: hold, step up, promote or roll back.

A challenger enters at the first step's share of the traffic and moves up one step at a time,
each step after `min_outcomes` labelled outcomes and `min_minutes` at that share, and only
while every guardrail holds: its p99 latency within `latency_slack` of the control's (and
under the SLO), its error rate within `error_slack` of the control's, and no significant harm
on the experiment's metric by the always-valid test. At the last step it is promoted when the
sequential test shows it better, or (with a `margin`) when the always-valid interval shows it
no worse than `margin`. A guardrail breach or significant harm rolls it back at once.

With a shadow phase first (`decide_shadow`), the challenger is scored on a copy of the traffic
and judged on the outcomes of the same requests the control answered: significant harm rolls
it back before it answers anyone; otherwise it goes live at the first step after `min_requests`
predictions paired with the live answers and `min_minutes`.

The sequential test and interval (mSPRT, Johari et al. 2017) stay valid however often the
controller reads them, which is what lets it act after every batch of outcomes without
inflating its error rate. `decide` reads; `advance` applies; the Ray shell persists the state.
The evidence a decision reads and its guardrails: guardrails.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from app.monitoring import guardrails
from app.monitoring.messages import Message

HOLD, STEP_UP, PROMOTE, ROLL_BACK, PAUSED = "hold", "step up", "promote", "roll back", "paused"
GO_LIVE = "go live"  # the shadow phase is over: the challenger gets its first share
RUNNING, PROMOTED, ROLLED_BACK = "running", "promoted", "rolled back"
STOPPED = "stopped"  # ended outside the controller: an operator moved the challenger alias


@dataclass(frozen=True)
class Policy:
    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)  # the challenger's share at each step
    min_outcomes: int = 200  # per variant, at the current step, before it may move
    min_minutes: float = 5.0
    latency_slack: float = 0.2  # challenger p99 <= control p99 * (1 + slack) ...
    slo_p99_ms: float = 100.0  # ... and <= the SLO
    error_slack: float = 0.01  # challenger error rate <= control's + slack
    min_requests: int = 100  # a variant's latency and error rate are judged after this many requests
    alpha: float = 0.05
    mde: float = 0.05  # relative effect the test is tuned to (the mixture's scale)
    margin: float | None = None  # promote when no worse than this (absolute), if set
    mode: str = "auto"  # "manual" pauses the controller
    # In shadow, also wait for this many of the shadow's outcomes before going live: the shadow
    # phase costs no user exposure, so a longer one catches more harm for free (time only).
    # 0: go live on the schedule alone (`min_requests` paired, `min_minutes`).
    shadow_min_outcomes: int = 0


@dataclass(frozen=True)
class Arm:
    """What the monitor counted for one variant since the challenger entered."""

    outcomes: int = 0
    successes: int = 0  # outcomes counted as success by the experiment's metric
    requests: int = 0  # requests that reached it, each once however many rows it held
    errors: int = 0  # of those, the requests it failed on any row
    p99_ms: float | None = None


@dataclass(frozen=True)
class State:
    challenger: int | None = None  # registry version under rollout
    step: int = 0
    step_started_s: float = 0.0
    outcomes_at_step: int = 0  # challenger outcomes counted when this step began
    status: str = RUNNING
    history: tuple = field(default_factory=tuple)  # (time, action, share, reason)

    def to_dict(self) -> dict:
        return {**asdict(self), "history": [list(h) for h in self.history]}

    @classmethod
    def from_dict(cls, d: dict) -> State:
        """The state a restarted controller reads back (see `to_dict`)."""
        return cls(**{**d, "history": tuple(tuple(h) for h in d.get("history", []))})

    def share(self, policy: Policy) -> float:
        if self.status == PROMOTED:
            return 1.0
        if self.status in (ROLLED_BACK, STOPPED) or self.challenger is None:
            return 0.0
        return policy.steps[self.step]


@dataclass(frozen=True)
class Decision:
    action: str
    share: float  # the challenger's share after the decision
    reason: str
    evidence: dict


class RolloutEvent(Message):
    """One step of a rollout's history: what the controller did, at what share, and why."""

    at: float
    action: str
    share: float  # the challenger's share after it
    reason: str


class LastDecision(RolloutEvent):
    """The controller's last look, with the evidence it read (also the ledger entry's)."""

    evidence: dict[str, Any]


class RolloutStatus(Message):
    """`GET /experiment/rollout`: the challenger under rollout, its step and share, the last
    decision and the history. `status` is "idle" and the step and phase None without one."""

    mode: str
    phase: str | None  # "shadow" or "live"
    challenger: int | None
    status: str
    step: int | None  # 1-based
    steps: tuple[float, ...]  # percent of the traffic at each step
    share: float
    last_decision: LastDecision | None
    history: tuple[RolloutEvent, ...]


def start(version: int, now: float) -> State:
    return State(challenger=version, step=0, step_started_s=now)


def decide(policy: Policy, state: State, control: Arm, challenger: Arm, now: float) -> Decision:
    """What the controller does now, and why (pure: the same inputs give the same decision)."""
    evidence = guardrails.evidence(policy, control, challenger)
    share = state.share(policy)
    if state.challenger is None or state.status != RUNNING:
        return Decision(HOLD, share, f"no rollout running ({state.status})", evidence)
    if policy.mode == "manual":
        return Decision(PAUSED, share, "rollout.mode is manual: an operator moves the split", evidence)
    breach = guardrails.guardrail_breach(policy, control, challenger, evidence)
    if breach:
        return Decision(ROLL_BACK, 0.0, breach, evidence)
    at_step = challenger.outcomes - state.outcomes_at_step
    minutes = (now - state.step_started_s) / 60
    if at_step < policy.min_outcomes or minutes < policy.min_minutes:
        return Decision(
            HOLD,
            share,
            f"step {state.step + 1}/{len(policy.steps)} at {share:.0%}: {at_step}/{policy.min_outcomes} "
            f"outcomes, {minutes:.1f}/{policy.min_minutes:g} min",
            evidence,
        )
    if state.step + 1 < len(policy.steps):
        nxt = policy.steps[state.step + 1]
        return Decision(
            STEP_UP, nxt, f"guardrails hold after {at_step} outcomes: {share:.0%} -> {nxt:.0%}", evidence
        )
    if evidence["p_value"] is not None and evidence["p_value"] < policy.alpha and evidence["diff"] > 0:
        return Decision(
            PROMOTE, 1.0, f"better: sequential p={evidence['p_value']:.4f} < {policy.alpha}", evidence
        )
    low = evidence["interval"][0]
    if policy.margin is not None and low is not None and low > -policy.margin:
        return Decision(
            PROMOTE, 1.0, f"non-inferior: always-valid lower bound {low:+.4f} > -{policy.margin}", evidence
        )
    return Decision(
        HOLD, share, f"at the last step; no decision yet (sequential p={evidence['p_value']})", evidence
    )


def decide_shadow(
    policy: Policy, state: State, control: Arm, shadow: Arm, *, paired: int, now: float
) -> Decision:
    """The shadow phase's decision (pure): `shadow` holds the challenger's shadow predictions
    with the outcomes of their live requests, `paired` how many were paired with a live answer.

    The outcomes cost no user a harmful answer here, so harm by the live phase's always-valid
    test rolls the challenger back at once; without harm it goes live as the schedule says."""
    evidence = guardrails.evidence(policy, control, shadow)
    if state.challenger is None or state.status != RUNNING:
        return Decision(HOLD, 0.0, f"no rollout running ({state.status})", evidence)
    if policy.mode == "manual":
        return Decision(PAUSED, 0.0, "rollout.mode is manual: an operator moves the split", evidence)
    harm = guardrails.harm(policy, evidence)
    if harm:
        return Decision(ROLL_BACK, 0.0, f"in shadow, {harm}", evidence)
    minutes = (now - state.step_started_s) / 60
    need, wait, scored = policy.min_requests, policy.min_minutes, policy.shadow_min_outcomes
    if paired >= need and minutes >= wait and shadow.outcomes >= scored:
        reason = f"shadow done ({paired} paired, {shadow.outcomes} outcomes, no significant harm)"
        return Decision(GO_LIVE, policy.steps[0], reason, evidence)
    outcomes = f"{shadow.outcomes}/{scored}" if scored else f"{shadow.outcomes}"
    return Decision(
        HOLD,
        0.0,
        f"in shadow: {paired}/{need} predictions paired with the live answers, {minutes:.1f}/{wait:g} min, "
        f"{outcomes} outcomes",
        evidence,
    )


def stop(state: State, now: float, reason: str) -> State:
    """The rollout ended outside the controller (the challenger alias moved)."""
    return replace(state, status=STOPPED, history=(*state.history, (now, STOPPED, 0.0, reason)))


def advance(state: State, decision: Decision, challenger_outcomes: int, now: float) -> State:
    """The state after acting on `decision`."""
    entry = (now, decision.action, decision.share, decision.reason)
    if decision.action == STEP_UP:
        return replace(
            state,
            step=state.step + 1,
            step_started_s=now,
            outcomes_at_step=challenger_outcomes,
            history=(*state.history, entry),
        )
    if decision.action == PROMOTE:
        return replace(state, status=PROMOTED, history=(*state.history, entry))
    if decision.action == ROLL_BACK:
        return replace(state, status=ROLLED_BACK, history=(*state.history, entry))
    return state  # hold and pause change nothing (the last decision is reported, not stored)


def cap_producers(outcomes: dict[str, int], successes: dict[str, int], share: float) -> tuple[int, int, int]:
    """(outcomes, successes, capped) of an arm where no producer counts for more than `share`
    of its outcomes, once more than one producer reported (a lone producer is never capped).
    The bound is the largest L with L <= share x sum(min(n, L)); a capped producer keeps its
    own success rate. `share` >= 1/2, so two producers that reported alike both count in full."""
    reported = {p: n for p, n in outcomes.items() if n > 0}
    if len(reported) < 2 or share >= 1:
        total = sum(reported.values())
        return total, min(sum(successes.get(p, 0) for p in reported), total), 0
    bound = float(max(reported.values()))
    for _ in range(1000):  # decreasing to the largest fixed point: geometric, so few steps
        lower = share * sum(min(n, bound) for n in reported.values())
        if lower >= bound - 1e-9:
            break
        bound = lower
    kept = {p: min(n, math.floor(bound + 1e-9)) for p, n in reported.items()}
    wins = sum(round(min(successes.get(p, 0), n) * kept[p] / n) for p, n in reported.items())
    counted = sum(kept.values())
    return counted, wins, sum(reported.values()) - counted


def fixed_horizon_n(p: float, effect: float, *, alpha: float, power: float) -> int:
    """Per-variant outcomes a fixed-horizon two-proportion test needs to see `effect` (absolute)."""
    from scipy import stats

    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    var = p * (1 - p) + (p + effect) * (1 - p - effect)
    return math.ceil(z**2 * var / effect**2)
