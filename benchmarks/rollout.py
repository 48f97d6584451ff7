"""Benchmark: the rollout controller's decisions on simulated experiments, against baselines.

    python benchmarks/rollout.py --experiments 1000

Every simulated minute brings `--per-minute` labelled outcomes, split by the challenger's
current share; the controller (`app.monitoring.rollout.decide`) reads after every minute.
1. A/A: identical variants (accuracy 0.70). The share of experiments that promote the
   challenger (a false promotion; goal <= alpha), next to the same schedule deciding with a
   naive two-proportion z-test read the same way.
2. Injected regression (challenger 5 points worse): outcomes served by the challenger before
   the rollback, next to a fixed policy of 10 % of the traffic for the fixed horizon with the
   same power (80 %) (goal: at most 1/10 of its exposure); and the same challenger with a
   shadow phase first (`rollout.shadow_first`): scored on a copy of every request, judged on
   those requests' outcomes (`rollout.decide_shadow`) and going live after `min_requests`
   paired predictions and `min_minutes` when not shown worse; then with the shadow phase also
   waiting for the power analysis's sample size for `mde` (`Policy.shadow_min_outcomes`).
   Exposure counts only outcomes the challenger served to users; minutes to the rollback are
   printed beside it.
3. Better challenger (+3 points): challenger outcomes until the promotion, next to the
   per-variant sample size of a fixed-horizon test with the same power.
Writes benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.monitoring import rollout  # noqa: E402
from app.monitoring.abtest import min_sample_size, two_proportion_test  # noqa: E402
from app.monitoring.rollout import GO_LIVE, PROMOTE, ROLL_BACK, STEP_UP, Arm, Policy  # noqa: E402

BASE = 0.70
SHADOW_JUDGED = "regr., shadow 1st, n"  # the shadow phase waits for a judging sample size


def simulate(
    policy: Policy,
    p_challenger: float,
    *,
    per_minute: int,
    minutes: int,
    rng,
    naive: bool = False,
    shadow_first: bool = False,
):
    """One experiment: (outcome, challenger outcomes served, minutes) with outcome in
    'promote', 'roll back' or 'none' (the horizon ran out)."""
    state = rollout.start(2, 0.0)
    a = np.zeros(2, dtype=np.int64)  # control: outcomes, successes
    b = np.zeros(2, dtype=np.int64)
    start = 1
    if shadow_first:
        ended, start = _shadow_phase(policy, p_challenger, per_minute=per_minute, minutes=minutes, rng=rng)
        if ended is not None:
            return ended, 0, start  # rolled back (or the horizon ran out) before it answered anyone
        state = replace(state, step_started_s=start * 60.0)  # live from here; the arms count anew
        start += 1
    for minute in range(start, minutes + 1):
        share = state.share(policy)
        n_b = rng.binomial(per_minute, share)
        n_a = per_minute - n_b
        a += (n_a, rng.binomial(n_a, BASE))
        b += (n_b, rng.binomial(n_b, p_challenger))
        control, challenger = Arm(int(a[0]), int(a[1])), Arm(int(b[0]), int(b[1]))
        decision = (_naive if naive else rollout.decide)(policy, state, control, challenger, minute * 60.0)
        if decision.action in (PROMOTE, ROLL_BACK):
            return decision.action, int(b[0]), minute
        if decision.action == STEP_UP:
            state = rollout.advance(state, decision, int(b[0]), minute * 60.0)
    return "none", int(b[0]), minutes


def _shadow_phase(policy: Policy, p_challenger: float, *, per_minute: int, minutes: int, rng):
    """The shadow phase: the control answers every request and the challenger scores a copy of
    each (shadow_fraction 1), both judged on the requests' outcomes (drawn independently per
    variant, as the test assumes). ('roll back' or 'none', minute) when it ended the
    experiment, else (None, the minute it went live)."""
    state = rollout.start(2, 0.0)
    a = np.zeros(2, dtype=np.int64)
    shadow = np.zeros(2, dtype=np.int64)
    for minute in range(1, minutes + 1):
        a += (per_minute, rng.binomial(per_minute, BASE))
        shadow += (per_minute, rng.binomial(per_minute, p_challenger))
        control, copy = Arm(int(a[0]), int(a[1])), Arm(int(shadow[0]), int(shadow[1]))
        paired = int(shadow[0])
        decision = rollout.decide_shadow(policy, state, control, copy, paired=paired, now=minute * 60.0)
        if decision.action == ROLL_BACK:
            return ROLL_BACK, minute
        if decision.action == GO_LIVE:
            return None, minute
    return "none", minutes


def _naive(policy: Policy, state, control: Arm, challenger: Arm, now: float):
    """The same schedule, but the fixed-horizon z-test read at every look."""
    decision = rollout.decide(policy, state, control, challenger, now)
    p = two_proportion_test(control.successes, control.outcomes, challenger.successes, challenger.outcomes)
    if p is None or p >= policy.alpha or decision.action == STEP_UP:
        return decision if decision.action in (STEP_UP,) else rollout.Decision("hold", 0, "", {})
    better = challenger.successes / challenger.outcomes > control.successes / control.outcomes
    if not better:
        return rollout.Decision(ROLL_BACK, 0.0, "z-test harm", {})
    last = state.step == len(policy.steps) - 1
    return rollout.Decision(PROMOTE if last else "hold", 1.0, "z-test better", {})


def run(experiments: int, per_minute: int, minutes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    policy = Policy(min_outcomes=200, min_minutes=5, slo_p99_ms=1e9)
    # A shadow phase long enough to judge: the fixed-horizon sample size for a change of `mde`.
    judged = replace(
        policy, shadow_min_outcomes=min_sample_size(BASE, policy.mde, alpha=policy.alpha, power=0.8)
    )
    out: dict = {}
    for name, p_b, naive, shadow_first, rules in (
        ("A/A (mSPRT)", BASE, False, False, policy),
        ("A/A (naive z-test)", BASE, True, False, policy),
        ("regression -5 pts", BASE - 0.05, False, False, policy),
        ("regression, shadow 1st", BASE - 0.05, False, True, policy),
        (SHADOW_JUDGED, BASE - 0.05, False, True, judged),
        ("better +3 pts", BASE + 0.03, False, False, policy),
    ):
        t0 = time.perf_counter()
        results = [
            simulate(
                rules,
                p_b,
                per_minute=per_minute,
                minutes=minutes,
                rng=rng,
                naive=naive,
                shadow_first=shadow_first,
            )
            for _ in range(experiments)
        ]
        actions = [r[0] for r in results]
        exposure = np.array([r[1] for r in results])
        rolled_back_at = [r[2] for r in results if r[0] == ROLL_BACK]
        out[name] = {
            "promoted": actions.count(PROMOTE) / experiments,
            "rolled_back": actions.count(ROLL_BACK) / experiments,
            "undecided": actions.count("none") / experiments,
            "median_challenger_outcomes": float(np.median(exposure)),
            "mean_challenger_outcomes": float(exposure.mean()),
            "median_minutes_to_rollback": float(np.median(rolled_back_at)) if rolled_back_at else None,
            "seconds": round(time.perf_counter() - t0, 1),
            "shadow_min_outcomes": rules.shadow_min_outcomes if shadow_first else None,
            # Rolled back in shadow: it never answered anyone.
            "caught_in_shadow": float(np.mean([r[0] == ROLL_BACK and r[1] == 0 for r in results]))
            if shadow_first
            else None,
        }
    out["fixed horizon"] = {
        "n_per_variant_for_-5_pts": rollout.fixed_horizon_n(BASE - 0.05, 0.05, alpha=0.05, power=0.8),
        "n_per_variant_for_+3_pts": rollout.fixed_horizon_n(BASE, 0.03, alpha=0.05, power=0.8),
    }
    return out


def _exposure(row: dict, baseline: int) -> str:
    median, mean = row["median_challenger_outcomes"], row["mean_challenger_outcomes"]
    return f"{median:,.0f} ({median / baseline:.2f}x), {mean:,.0f} ({mean / baseline:.2f}x)"


def _minutes(row: dict) -> str:
    m = row["median_minutes_to_rollback"]
    return "-" if m is None else f"{m:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--per-minute", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    res = run(args.experiments, args.per_minute, args.minutes, args.seed)
    fixed = res["fixed horizon"]
    print(
        f"{args.experiments} experiments per row, {args.per_minute} outcomes/minute, horizon {args.minutes} min"
    )
    print(f"{'scenario':<22}{'promoted':>10}{'rolled back':>13}{'undecided':>11}{'median chall. n':>17}")
    for name, r in res.items():
        if name == "fixed horizon":
            continue
        print(
            f"{name:<22}{r['promoted']:>10.3f}{r['rolled_back']:>13.3f}{r['undecided']:>11.3f}"
            f"{r['median_challenger_outcomes']:>17,.0f}"
        )
    reg = res["regression -5 pts"]["median_challenger_outcomes"]
    n_reg = fixed["n_per_variant_for_-5_pts"]
    print(
        f"regression exposure: {reg:,.0f} vs fixed 10 % policy {n_reg:,} -> {reg / n_reg:.2f}x (goal <= 0.10x)"
    )
    plain, shadow, judged = res["regression -5 pts"], res["regression, shadow 1st"], res[SHADOW_JUDGED]
    print(
        f"regression exposure (median, mean) vs fixed 10 % policy {n_reg:,}: "
        f"rollout {_exposure(plain, n_reg)}; shadow first {_exposure(shadow, n_reg)}; "
        f"shadow first waiting {judged['shadow_min_outcomes']:,} outcomes {_exposure(judged, n_reg)}"
    )
    print(
        "median minutes to the rollback: "
        f"rollout {_minutes(plain)}, shadow first {_minutes(shadow)}, "
        f"shadow first waiting {_minutes(judged)} "
        f"(fixed 10 % policy: {n_reg / (0.1 * args.per_minute):,.0f} min to its horizon)"
    )
    print(
        f"rolled back in shadow, before answering anyone: shadow first {shadow['caught_in_shadow']:.1%}, "
        f"waiting {judged['caught_in_shadow']:.1%}"
    )
    better = res["better +3 pts"]["median_challenger_outcomes"]
    n_better = fixed["n_per_variant_for_+3_pts"]
    print(
        f"better challenger: {better:,.0f} challenger outcomes to promote vs fixed horizon {n_better:,} per variant"
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "rollout.json").write_text(json.dumps({"args": vars(args), "results": res}, indent=1))


if __name__ == "__main__":
    main()
