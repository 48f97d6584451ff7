"""RolloutController: the Ray shell of the automatic canary rollout (monitoring/rollout.py).

A small detached actor, one per storage root. Every `rollout.check_seconds` it reads the
registry's challenger alias, the experiment settings (the serve-control actor) and the
monitor's experiment report, asks the pure decision core what to do, and does it:

- a new challenger version enters at `rollout.steps[0]` percent of the traffic;
- a step up moves the split through the serve-control actor (every replica follows);
- a promotion moves the champion alias and resets the split to 100 % champion;
- a rollback moves the challenger to the `rejected` alias and its share to 0.

Every action is an entry of the promotion ledger (registry/ledger.py) with its evidence. The
rollout state, and the counts the variants had when the challenger entered (the arms compare
only what both saw since), are persisted, so a restarted controller goes on where it was.
With `rollout.mode: manual` it reports and never acts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict

from app.cluster import call_self_after_init, detached_actor
from app.config import AppConfig
from app.files import atomic_write_text
from app.monitoring import rollout
from app.registry import ledger
from app.registry.registry import CHALLENGER, REJECTED, Registry

log = logging.getLogger(__name__)
ROLLOUT = "rollout-controller"
COUNTED = ("outcomes", "successes", "requests", "errors")


def policy(cfg: AppConfig) -> rollout.Policy:
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
    )


def counts(report: dict, variant: str) -> dict:
    """What the monitor counted for a variant so far (successes by the experiment's metric)."""
    v = report.get("variants", {}).get(variant) or {}
    outcomes = int(v.get("outcomes") or 0)
    return {
        "outcomes": outcomes,
        "successes": round((v.get("rate") or 0.0) * outcomes),
        "requests": int(v.get("requests") or 0),
        "errors": int(v.get("errors") or 0),
        "p99_ms": (v.get("latency_ms") or {}).get("p99"),
    }


def arm(now: dict, at_entry: dict | None) -> rollout.Arm:
    """A variant's counts since the challenger entered."""
    base = at_entry or {}
    return rollout.Arm(
        **{k: max(now[k] - base.get(k, 0), 0) for k in COUNTED},
        p99_ms=now["p99_ms"],
    )


def split_with(experiment: dict, share: float) -> dict:
    """The experiment with the challenger at `share` of what the control and it serve
    together; other variants keep their shares."""
    control, split = experiment["control"], dict(experiment["split"])
    others = sum(v for k, v in split.items() if k not in (control, CHALLENGER))
    split[CHALLENGER] = share * (1 - others)
    split[control] = (1 - share) * (1 - others)
    return {**experiment, "split": split}


class RolloutController:
    def __init__(self, cfg: AppConfig, *, control=None, monitor=None):
        from app.serving import actors

        self.cfg = cfg
        self.policy = policy(cfg)
        self.path = cfg.storage.rollout_state
        self.control = control or actors.control_actor(cfg)
        self.monitor = monitor or actors.monitor_actor(cfg)
        self.registry = Registry(cfg)
        self.state, self.at_entry = self._load()
        self.last: dict | None = None  # the last decision, for GET /experiment/rollout
        self.lock = asyncio.Lock()
        self.loop: asyncio.Task | None = None
        if self.policy.mode == "auto":
            call_self_after_init("ensure_running")  # after a restart too

    # ------------------------------------------------------------ persistence

    def _load(self) -> tuple[rollout.State, dict]:
        if not self.path.exists():
            return rollout.State(), {}
        try:
            saved = json.loads(self.path.read_text())
            return rollout.State.from_dict(saved["state"]), dict(saved["at_entry"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("rollout state %s is unreadable (%s): no rollout running", self.path, exc)
            return rollout.State(), {}

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps({"state": self.state.to_dict(), "at_entry": self.at_entry}))

    # ------------------------------------------------------------ the loop

    async def ensure_running(self) -> dict:
        if self.loop is None:
            self.loop = asyncio.get_running_loop().create_task(self._run())
        return self.status()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.rollout.check_seconds)
            try:
                await self.tick()
            except Exception:  # a registry or monitor hiccup: try again next time
                log.exception("rollout check failed")

    async def tick(self, now: float | None = None) -> dict:
        """One look: enter a new challenger, then decide and act. Returns the status."""
        async with self.lock:
            now = time.time() if now is None else now
            experiment = (await self.control.state.remote())["experiment"]
            version = await asyncio.to_thread(self.registry.alias_version, CHALLENGER)
            report = await self.monitor.report.remote(experiment)
            if self.state.status == rollout.RUNNING and version != self.state.challenger:
                self.state = rollout.stop(self.state, now, f"the challenger alias moved to {version}")
                self._save()
            if self.policy.mode == "auto" and version is not None and version != self.state.challenger:
                await self._enter(version, experiment, report, now)
                experiment = (await self.control.state.remote())["experiment"]
            control = arm(counts(report, experiment["control"]), self.at_entry.get("control"))
            challenger = arm(counts(report, CHALLENGER), self.at_entry.get("challenger"))
            decision = rollout.decide(self.policy, self.state, control, challenger, now)
            self.last = {"at": now, **asdict(decision)}
            if decision.action in (rollout.STEP_UP, rollout.PROMOTE, rollout.ROLL_BACK):
                await self._act(decision, experiment)
                self.state = rollout.advance(self.state, decision, challenger.outcomes, now)
                self._save()
            return self.status()

    async def _enter(self, version: int, experiment: dict, report: dict, now: float) -> None:
        self.state = rollout.start(version, now)
        self.at_entry = {
            "control": counts(report, experiment["control"]),
            "challenger": counts(report, CHALLENGER),
        }
        share = self.policy.steps[0]
        await self.control.set_experiment.remote(split_with(experiment, share))
        await asyncio.to_thread(
            self.registry.record,
            ledger.entry(
                "step",
                by=ledger.CONTROLLER,
                version=version,
                alias=CHALLENGER,
                reason=f"new challenger enters at {share:.0%} of the traffic",
            ),
        )
        self._save()
        log.info("rollout of version %d started at %.0f%%", version, share * 100)

    async def _act(self, decision: rollout.Decision, experiment: dict) -> None:
        version = self.state.challenger
        evidence = decision.evidence
        if decision.action == rollout.PROMOTE:
            await asyncio.to_thread(
                self.registry.promote,
                version,
                by=ledger.CONTROLLER,
                reason=decision.reason,
                evidence=evidence,
            )
        elif decision.action == rollout.ROLL_BACK:
            await asyncio.to_thread(
                self.registry.set_alias,
                REJECTED,
                version,
                by=ledger.CONTROLLER,
                reason=decision.reason,
                evidence=evidence,
            )
        else:
            await asyncio.to_thread(
                self.registry.record,
                ledger.entry(
                    "step",
                    by=ledger.CONTROLLER,
                    version=version,
                    alias=CHALLENGER,
                    reason=decision.reason,
                    evidence=evidence,
                ),
            )
        share = decision.share if decision.action == rollout.STEP_UP else 0.0
        await self.control.set_experiment.remote(split_with(experiment, share))
        log.info("rollout of version %d: %s (%s)", version, decision.action, decision.reason)

    # ------------------------------------------------------------ status

    def status(self) -> dict:
        """GET /experiment/rollout: the state, the challenger's share, the last decision."""
        s = self.state
        return {
            "mode": self.policy.mode,
            "challenger": s.challenger,
            "status": s.status if s.challenger is not None else "idle",
            "step": None if s.challenger is None else s.step + 1,
            "steps": [round(x * 100, 6) for x in self.policy.steps],
            "share": s.share(self.policy),
            "last_decision": self.last,
            "history": [
                {"at": at, "action": action, "share": share, "reason": reason}
                for at, action, share, reason in s.history
            ],
        }


def get_rollout(cfg: AppConfig):
    return detached_actor(RolloutController, ROLLOUT, str(cfg.storage.path()), cfg)
