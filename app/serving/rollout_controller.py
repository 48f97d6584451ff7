"""RolloutController: the Ray shell of the automatic canary rollout (monitoring/rollout.py).

A small detached actor, one per storage root. Every `rollout.check_seconds` it reads the
registry's challenger alias, the experiment settings (the serve-control actor) and the
monitor's experiment report, asks the pure decision core what to do, and does it:

- a new challenger version enters at `rollout.steps[0]` percent of the traffic;
- a step up moves the split through the serve-control actor (every replica follows);
- a promotion moves the champion alias and resets the split to 100 % champion;
- a rollback moves the challenger to the `rejected` alias and its share to 0.

With `rollout.shadow_first` the challenger is first scored in shadow: its shadow predictions
get the outcomes of their live requests, so it is rolled back there, before it answers anyone,
when they show significant harm against the control's (`rollout.decide_shadow`).

Every action is an entry of the promotion ledger (registry/ledger.py) with its evidence. The
rollout state, and the counts the variants had when the challenger entered (the arms compare
only what both saw since), are persisted, so a restarted controller goes on where it was.
With `rollout.mode: manual` it reports and never acts. Its policy, and the report read for the
shadow phase, come from rollout_inputs.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, replace

from app.cluster.actors import call_self_after_init, detached_actor
from app.config import AppConfig, ExperimentConfig
from app.data.state import StateConflict, state_store
from app.monitoring import rollout
from app.monitoring.experiment import ExperimentReport
from app.registry import ledger
from app.registry.registry import CHALLENGER, REJECTED, Registry
from app.serving import rollout_evidence as evidence_of
from app.serving.rollout_evidence import arm, counts, producers
from app.serving.rollout_inputs import SHADOW_ARM, entry_counts, policy, shadow_view, with_shadow_arm
from app.serving.splits import in_shadow, split_with

log = logging.getLogger(__name__)
ROLLOUT = "rollout-controller"
SHADOW, LIVE = "shadow", "live"  # the phases of a rollout (shadow only with rollout.shadow_first)


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


class RolloutController:
    def __init__(self, cfg: AppConfig, *, control=None, monitor=None):
        from app.serving import actors

        self.cfg = cfg
        self.policy = policy(cfg)
        self.store, self.key = state_store(cfg.storage), cfg.storage.rollout_state
        self.where = f"{self.store.location}/{self.key}"
        self.control = control or actors.control_actor(cfg)
        self.monitor = monitor or actors.monitor_actor(cfg)
        self.registry = Registry(cfg)
        self.version: str | None = None  # of the stored rollout: what the next write replaces
        self.state, self.at_entry, self.phase = self._load()
        self.last: rollout.LastDecision | None = None  # for GET /experiment/rollout
        self.lock = asyncio.Lock()
        self.loop: asyncio.Task | None = None
        if self.policy.mode == "auto":
            call_self_after_init("ensure_running")  # after a restart too

    # ------------------------------------------------------------ persistence

    def _load(self) -> tuple[rollout.State, dict, str]:
        """The stored rollout (and the version read, which the next write must replace)."""
        stored = self.store.read(self.key)
        self.version = None if stored is None else stored.version
        if stored is None:
            return rollout.State(), {}, LIVE
        try:
            saved = json.loads(stored.data)
            state, at_entry = rollout.State.from_dict(saved["state"]), dict(saved["at_entry"])
            return state, at_entry, saved.get("phase", LIVE)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("rollout state %s is unreadable (%s): no rollout running", self.where, exc)
            return rollout.State(), {}, LIVE

    def _refresh(self) -> None:
        """Adopt a rollout another controller stored since this one last read or wrote."""
        stored = self.store.read(self.key)
        if (stored and stored.version) != self.version:
            self.state, self.at_entry, self.phase = self._load()

    def _save(self) -> None:
        saved = {"state": self.state.to_dict(), "at_entry": self.at_entry, "phase": self.phase}
        try:
            self.version = self.store.write(self.key, json.dumps(saved).encode(), replaces=self.version)
        except StateConflict:
            self.state, self.at_entry, self.phase = self._load()
            raise StateConflict(
                f"rollout state {self.where} was written by another controller: its rollout is adopted"
            ) from None

    # ------------------------------------------------------------ the loop

    async def ensure_running(self) -> rollout.RolloutStatus:
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

    async def tick(self, now: float | None = None) -> rollout.RolloutStatus:
        """One look: enter a new challenger, then decide and act. Returns the status."""
        async with self.lock:
            now = time.time() if now is None else now
            self._refresh()
            experiment = (await self.control.state.remote()).experiment
            version = await asyncio.to_thread(self.registry.alias_version, CHALLENGER)
            report = await self.monitor.report.remote(experiment)
            running = self.state.challenger is not None and self.state.status == rollout.RUNNING
            if running and version != self.state.challenger:
                self.state = rollout.stop(self.state, now, f"the challenger alias moved to {version}")
                self._save()
                if self.policy.mode == "auto":  # the share it had goes back to the control
                    await self.control.set_experiment.remote(split_with(experiment, 0.0))
                    experiment = (await self.control.state.remote()).experiment
            if self.policy.mode == "auto" and version is not None and version != self.state.challenger:
                await self._enter(version, experiment, report, now)
                experiment = (await self.control.state.remote()).experiment
            if self.phase == SHADOW and self.state.status == rollout.RUNNING:
                await self._shadow_step(experiment, report, now)
                return self.status()
            control, capped_a = await self._arm(experiment, experiment.control, report, "control")
            challenger, capped_b = await self._arm(experiment, CHALLENGER, report, "challenger")
            decision = rollout.decide(self.policy, self.state, control, challenger, now)
            since_entry = producers(report, self.at_entry.get("producers"))
            capped = {"capped": {"control": capped_a, "challenger": capped_b}, "caps": self._caps()}
            decision = replace(decision, evidence={**decision.evidence, "producers": since_entry, **capped})
            self.last = rollout.LastDecision(at=now, **asdict(decision))
            if decision.action in (rollout.STEP_UP, rollout.PROMOTE, rollout.ROLL_BACK):
                await self._act(decision, experiment)
                self.state = rollout.advance(self.state, decision, challenger.outcomes, now)
                self._save()
            return self.status()

    async def _arm(
        self, experiment: ExperimentConfig, variant: str, report: ExperimentReport, role: str
    ) -> tuple[rollout.Arm, dict[str, int]]:
        """A variant's counts since the challenger entered, with the p99 of those requests only
        and the producer share cap applied; and the outcomes each cap left out since then."""
        now = counts(report, variant)
        since = arm(now, self.at_entry.get(role))
        p99 = await self.monitor.recent_p99.remote(experiment.name, variant, since.requests)
        by_producer = producers(report, self.at_entry.get("producers")).get(variant, {})
        wins = evidence_of.producer_successes(report, self.at_entry.get("successes")).get(variant, {})
        share = self.cfg.rollout.max_producer_share
        capped, left_out = evidence_of.capped_arm(replace(since, p99_ms=p99), by_producer, wins, share)
        key_capped = evidence_of.key_capped(now, self.at_entry.get(role))
        return capped, {evidence_of.KEY_CAP: key_capped, evidence_of.PRODUCER_CAP: left_out}

    def _caps(self) -> dict:
        """The caps in force, named in every decision's evidence beside what they left out."""
        r = self.cfg.rollout
        return {"max_outcomes_per_key": r.max_outcomes_per_key, "max_producer_share": r.max_producer_share}

    async def _enter(
        self, version: int, experiment: ExperimentConfig, report: ExperimentReport, now: float
    ) -> None:
        self.state = rollout.start(version, now)
        if self.cfg.rollout.shadow_first:
            self.phase = SHADOW
            self.at_entry = {
                "shadow_paired": shadow_view(report)["paired"] or 0,
                **entry_counts(with_shadow_arm(report), experiment.control, SHADOW_ARM),
            }
            await self.control.set_experiment.remote(in_shadow(experiment))
            reason = "new challenger enters in shadow: scored on a copy of the traffic, never answered"
            await self._record("step", reason)
            self._save()
            log.info("rollout of version %d started in shadow", version)
        else:
            await self._go_live(experiment, report, now, "new challenger enters", {})

    async def _go_live(
        self, experiment: ExperimentConfig, report: ExperimentReport, now: float, why: str, evidence: dict
    ) -> None:
        """The challenger's first live share; the arms count from here."""
        self.phase = LIVE
        self.state = replace(self.state, step=0, step_started_s=now, outcomes_at_step=0)
        self.at_entry = entry_counts(report, experiment.control, CHALLENGER)
        share = self.policy.steps[0]
        await self.control.set_experiment.remote(split_with(experiment, share))
        await self._record("step", f"{why} at {share:.0%} of the traffic", evidence)
        self._save()
        log.info("rollout of version %d: live at %.0f%%", self.state.challenger, share * 100)

    async def _shadow_step(self, experiment: ExperimentConfig, report: ExperimentReport, now: float) -> None:
        """In shadow: roll back when the shadow's outcomes show harm against the control's, else
        go live after `min_requests` paired predictions and `min_minutes`."""
        view = shadow_view(report)
        paired = (view["paired"] or 0) - self.at_entry.get("shadow_paired", 0)
        both = with_shadow_arm(report)
        control, capped_a = await self._arm(experiment, experiment.control, both, "control")
        shadow, capped_b = await self._arm(experiment, SHADOW_ARM, both, "challenger")
        decision = rollout.decide_shadow(self.policy, self.state, control, shadow, paired=paired, now=now)
        since_entry = producers(both, self.at_entry.get("producers"))
        capped = {"capped": {"control": capped_a, "challenger": capped_b}, "caps": self._caps()}
        evidence = {**view, **decision.evidence, "producers": since_entry, **capped}
        decision = replace(decision, evidence=evidence)
        self.last = rollout.LastDecision(at=now, **asdict(decision))
        if decision.action == rollout.GO_LIVE:
            why = f"{decision.reason}, label agreement {_percent(view['label_agreement'])}; enters"
            await self._go_live(experiment, report, now, why, evidence)
        elif decision.action == rollout.ROLL_BACK:  # before it answered anyone
            await self._act(decision, experiment)
            self.state = rollout.advance(self.state, decision, shadow.outcomes, now)
            self._save()

    async def _record(self, event: str, reason: str, evidence: dict | None = None) -> None:
        entry = ledger.entry(
            event,
            by=ledger.CONTROLLER,
            version=self.state.challenger,
            alias=CHALLENGER,
            reason=reason,
            evidence=evidence or {},
        )
        await asyncio.to_thread(self.registry.record, entry)

    async def _act(self, decision: rollout.Decision, experiment: ExperimentConfig) -> None:
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
            # Its traffic first, then its alias: no request is routed to a variant losing its model.
            await self.control.set_experiment.remote(split_with(experiment, 0.0))
            await asyncio.to_thread(
                self.registry.set_alias,
                REJECTED,
                version,
                by=ledger.CONTROLLER,
                reason=decision.reason,
                evidence=evidence,
            )
        else:
            await self._record("step", decision.reason, evidence)
        share = decision.share if decision.action == rollout.STEP_UP else 0.0
        await self.control.set_experiment.remote(split_with(experiment, share))
        log.info("rollout of version %d: %s (%s)", version, decision.action, decision.reason)

    # ------------------------------------------------------------ status

    def status(self) -> rollout.RolloutStatus:
        """GET /experiment/rollout: the state, the challenger's share, the last decision."""
        s = self.state
        return rollout.RolloutStatus(
            mode=self.policy.mode,
            phase=self.phase if s.challenger is not None else None,
            challenger=s.challenger,
            status=s.status if s.challenger is not None else "idle",
            step=None if s.challenger is None else s.step + 1,
            steps=tuple(round(x * 100, 6) for x in self.policy.steps),
            share=0.0 if self.phase == SHADOW else s.share(self.policy),
            last_decision=self.last,
            history=tuple(
                rollout.RolloutEvent(at=at, action=action, share=share, reason=reason)
                for at, action, share, reason in s.history
            ),
        )


def get_rollout(cfg: AppConfig):
    return detached_actor(RolloutController, ROLLOUT, str(cfg.storage.path()), cfg)
