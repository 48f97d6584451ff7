"""The rollout controller's decisions, one table row per transition (no Ray)."""

from __future__ import annotations

import json

import pytest

from app.monitoring import rollout
from app.monitoring.rollout import (
    GO_LIVE,
    HOLD,
    PAUSED,
    PROMOTE,
    PROMOTED,
    ROLL_BACK,
    ROLLED_BACK,
    STEP_UP,
    Arm,
    Policy,
    State,
)

POLICY = Policy(min_outcomes=100, min_minutes=5)
T0 = 1_000_000.0
LATER = T0 + 600  # ten minutes on


def arm(outcomes=1000, rate=0.7, requests=1000, errors=0, p99=20.0) -> Arm:
    return Arm(
        outcomes=outcomes, successes=round(outcomes * rate), requests=requests, errors=errors, p99_ms=p99
    )


def at_step(step: int) -> State:
    return State(challenger=2, step=step, step_started_s=T0, outcomes_at_step=0)


@pytest.mark.parametrize(
    ("name", "policy", "state", "control", "challenger", "now", "action", "share", "reason"),
    [
        (
            "too few outcomes",
            POLICY,
            at_step(0),
            arm(),
            arm(outcomes=50),
            LATER,
            HOLD,
            0.05,
            "50/100 outcomes",
        ),
        ("too soon", POLICY, at_step(0), arm(), arm(), T0 + 60, HOLD, 0.05, "1.0/5 min"),
        ("step up", POLICY, at_step(0), arm(), arm(), LATER, STEP_UP, 0.25, "5% -> 25%"),
        ("step up again", POLICY, at_step(2), arm(), arm(), LATER, STEP_UP, 1.0, "50% -> 100%"),
        (
            "promote when better",
            POLICY,
            at_step(3),
            arm(5000, 0.70),
            arm(5000, 0.76),
            LATER,
            PROMOTE,
            1.0,
            "better",
        ),
        (
            "promote when non-inferior",
            Policy(min_outcomes=100, min_minutes=5, margin=0.03),
            at_step(3),
            arm(5000, 0.70),
            arm(5000, 0.70),
            LATER,
            PROMOTE,
            1.0,
            "non-inferior",
        ),
        (
            "hold at the last step",
            POLICY,
            at_step(3),
            arm(5000, 0.70),
            arm(5000, 0.70),
            LATER,
            HOLD,
            1.0,
            "no decision",
        ),
        ("roll back: slower", POLICY, at_step(1), arm(p99=20), arm(p99=30), T0, ROLL_BACK, 0.0, "latency"),
        (
            "roll back: over the SLO",
            POLICY,
            at_step(1),
            arm(p99=150),
            arm(p99=160),
            T0,
            ROLL_BACK,
            0.0,
            "SLO",
        ),
        ("roll back: errors", POLICY, at_step(1), arm(), arm(errors=50), T0, ROLL_BACK, 0.0, "errors"),
        ("roll back: harm", POLICY, at_step(1), arm(5000, 0.75), arm(2000, 0.68), T0, ROLL_BACK, 0.0, "harm"),
        (
            "too few requests to judge latency or errors",
            POLICY,
            at_step(0),
            arm(),
            arm(outcomes=50, requests=20, errors=5, p99=300),
            LATER,
            HOLD,
            0.05,
            "50/100 outcomes",
        ),
        ("paused", Policy(mode="manual"), at_step(1), arm(), arm(errors=50), LATER, PAUSED, 0.25, "manual"),
        ("nothing to roll out", POLICY, State(), arm(), arm(), LATER, HOLD, 0.0, "no rollout"),
        (
            "already promoted",
            POLICY,
            State(challenger=2, status=PROMOTED),
            arm(),
            arm(),
            LATER,
            HOLD,
            1.0,
            "promoted",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_transitions(name, policy, state, control, challenger, now, action, share, reason):
    decision = rollout.decide(policy, state, control, challenger, now)
    assert (decision.action, decision.share) == (action, share), decision.reason
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("name", "control", "shadow", "paired", "now", "action", "share", "reason"),
    [
        (
            "harm on the shadow's outcomes",
            arm(5000, 0.75),
            arm(2000, 0.68),
            0,
            T0,
            ROLL_BACK,
            0.0,
            "in shadow, harm",
        ),
        ("no harm, too few paired", arm(), arm(), 40, LATER, HOLD, 0.0, "40/100 predictions paired"),
        ("no harm, too soon", arm(), arm(), 150, T0 + 60, HOLD, 0.0, "1.0/5 min"),
        ("no harm: goes live", arm(), arm(), 150, LATER, GO_LIVE, 0.05, "shadow done"),
        (
            "no outcomes yet: goes live as before",
            arm(),
            arm(outcomes=0),
            150,
            LATER,
            GO_LIVE,
            0.05,
            "0 outcomes",
        ),
        (
            "better in shadow: live at the first step",
            arm(5000, 0.70),
            arm(5000, 0.76),
            150,
            LATER,
            GO_LIVE,
            0.05,
            "",
        ),
        # Slower or failing copies are judged once live (the shadow's latency is off the request path).
        (
            "errors are not judged in shadow",
            arm(),
            arm(errors=90),
            150,
            LATER,
            GO_LIVE,
            0.05,
            "no significant harm",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_shadow_transitions(name, control, shadow, paired, now, action, share, reason):
    decision = rollout.decide_shadow(POLICY, at_step(0), control, shadow, paired=paired, now=now)
    assert (decision.action, decision.share) == (action, share), decision.reason
    assert reason in decision.reason
    assert decision.evidence["n"] == {"control": control.outcomes, "challenger": shadow.outcomes}


def test_a_shadow_phase_may_wait_for_enough_outcomes_to_judge_before_going_live():
    policy = Policy(min_outcomes=100, min_minutes=5, shadow_min_outcomes=2000)
    waits = rollout.decide_shadow(policy, at_step(0), arm(), arm(outcomes=1500), paired=150, now=LATER)
    assert waits.action == HOLD and "1500/2000 outcomes" in waits.reason
    goes = rollout.decide_shadow(policy, at_step(0), arm(), arm(outcomes=2000), paired=150, now=LATER)
    assert goes.action == GO_LIVE and goes.share == policy.steps[0]


def test_the_shadow_phase_is_judged_on_the_same_test_as_the_live_phase():
    """Whatever the shadow's outcomes show harm on, the live phase would too (same arms)."""
    control, shadow = arm(5000, 0.75), arm(2000, 0.70)
    live = rollout.decide(POLICY, at_step(0), control, shadow, T0)
    in_shadow = rollout.decide_shadow(POLICY, at_step(0), control, shadow, paired=0, now=T0)
    assert (live.action, in_shadow.action) == (ROLL_BACK, ROLL_BACK)
    assert in_shadow.evidence["p_value"] == live.evidence["p_value"] < POLICY.alpha
    stopped = rollout.advance(at_step(0), in_shadow, 0, T0)
    assert stopped.status == ROLLED_BACK and stopped.history[-1][3].startswith("in shadow, harm")
    paused = rollout.decide_shadow(Policy(mode="manual"), at_step(0), control, shadow, paired=0, now=T0)
    assert paused.action == PAUSED


def test_advancing_moves_the_step_and_restarts_its_clock_and_count():
    state = rollout.start(2, T0)
    decision = rollout.decide(POLICY, state, arm(), arm(outcomes=300), LATER)
    moved = rollout.advance(state, decision, challenger_outcomes=300, now=LATER)
    assert (moved.step, moved.step_started_s, moved.outcomes_at_step) == (1, LATER, 300)
    # The next step needs its own outcomes and minutes.
    assert rollout.decide(POLICY, moved, arm(), arm(outcomes=350), LATER + 600).action == HOLD
    back = rollout.advance(moved, rollout.decide(POLICY, moved, arm(), arm(errors=90), LATER), 300, LATER)
    assert back.status == ROLLED_BACK and back.share(POLICY) == 0.0
    assert [h[1] for h in back.history] == [STEP_UP, ROLL_BACK]


def test_a_restarted_controller_reads_its_state_back_and_decides_the_same():
    state = rollout.advance(
        rollout.start(7, T0), rollout.decide(POLICY, rollout.start(7, T0), arm(), arm(), LATER), 1000, LATER
    )
    restored = State.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    later = LATER + 900
    assert rollout.decide(POLICY, restored, arm(), arm(2000), later) == rollout.decide(
        POLICY, state, arm(), arm(2000), later
    )


def test_the_error_rate_is_failed_requests_per_request():
    """200 requests reached the challenger; 3 failed (on however many rows): 1.5 %, over the
    control's 0 % + 1 % slack, so it is rolled back; 1 failed request is within the slack."""
    policy, state = rollout.Policy(), at_step(1)
    bad = rollout.decide(policy, state, arm(requests=200), arm(requests=200, errors=3), 1e9)
    assert bad.action == rollout.ROLL_BACK and bad.evidence["error_rate"]["challenger"] == 0.015
    ok = rollout.decide(policy, state, arm(requests=200), arm(requests=200, errors=1), 1e9)
    assert ok.action != rollout.ROLL_BACK and ok.evidence["error_rate"]["challenger"] == 0.005


@pytest.mark.parametrize(
    ("outcomes", "successes", "share", "expected"),
    [
        ({"crm": 1000}, {"crm": 600}, 0.8, (1000, 600, 0)),  # a lone producer is never capped
        ({"crm": 100, "billing": 100}, {"crm": 60, "billing": 50}, 0.5, (200, 110, 0)),  # alike: in full
        (
            {"crm": 300, "billing": 100},
            {"crm": 300, "billing": 50},
            0.6,
            (250, 200, 150),
        ),  # 150 = 60 % of 250
        ({"crm": 1000, "billing": 1}, {"crm": 1000, "billing": 1}, 0.8, (5, 5, 996)),
        ({"crm": 1000, "billing": 1}, {"crm": 1000, "billing": 1}, 1.0, (1001, 1001, 0)),  # no cap
    ],
)
def test_no_producer_counts_for_more_than_its_share_once_several_reported(
    outcomes, successes, share, expected
):
    assert rollout.cap_producers(outcomes, successes, share) == expected
