"""The rollout controller's Ray shell, called directly: the serve-control and monitor actors are
in-process doubles, the registry a real MLflow store. Entry, steps, promotion, rollback, the
ledger, a restart from the saved state, an operator taking over."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from app.config import ExperimentConfig
from app.data.state import StateConflict
from app.data.synthetic import Defects, generate
from app.monitor_views import ledger_table
from app.monitoring import rollout
from app.registry.registry import CHALLENGER, CHAMPION, REJECTED, Registry
from app.serving.control import ServeControl
from app.serving.rollout_controller import RolloutController
from app.serving.splits import split_with
from tests.configs import make_config
from tests.doubles import ActorDouble, ReportingMonitorDouble, variant_summary
from tests.helpers import quick_bundle

CLEAN = Defects(0, 0, 0, 0, 0, 0)
T0 = 1_000_000.0


@pytest.fixture
def served(tmp_path, request):
    # The shared state under the root; the tests of two controllers also run it on S3.
    state = request.getfixturevalue("state_storage") if "state_storage" in request.fixturenames else {}
    cfg = make_config(
        tmp_path,
        rollout={"mode": "auto", "steps": [10, 50, 100], "min_outcomes": 100, "min_minutes": 1},
        serve={"experiment": {"name": "exp-canary", "split": {"champion": 0.9, "challenger": 0.1}}},
        storage=state,
    )
    registry = Registry(cfg)
    registry.register(
        quick_bundle(cfg, generate(1500, seed=1, defects=CLEAN), seed=1), params={}, alias=CHAMPION
    )
    control, monitor = ServeControl(cfg), ReportingMonitorDouble()
    monitor.count("champion", outcomes=2000, rate=0.7, requests=2000)  # before any challenger

    def controller():  # a (re)started actor: its state comes from disk
        return RolloutController(cfg, control=ActorDouble(control), monitor=ActorDouble(monitor))

    return cfg, registry, control, monitor, controller


def tick(controller, now):
    return asyncio.run(controller.tick(now))


def challenger_share(control) -> float:
    return control.experiment.split[CHALLENGER]


def serve_minute(monitor, *, champion_rate, challenger_rate, n, p99=20.0):
    monitor.count("champion", outcomes=n, rate=champion_rate, requests=n)
    monitor.count("challenger", outcomes=n, rate=challenger_rate, requests=n, p99=p99)


def test_a_better_challenger_steps_up_and_is_promoted_with_its_ledger(served):
    cfg, registry, control, monitor, controller = served
    ctl = controller()
    assert tick(ctl, T0).status == "idle" and challenger_share(control) == 0.1  # nothing to roll out
    v2 = registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    status = tick(ctl, T0)
    assert (status.challenger, status.step, status.status) == (v2, 1, "running")
    assert challenger_share(control) == pytest.approx(0.1)  # entered at steps[0]
    assert status.last_decision.action == rollout.HOLD  # nothing counted since it entered

    serve_minute(monitor, champion_rate=0.7, challenger_rate=0.7, n=150)
    status = tick(ctl, T0 + 120)
    assert status.last_decision.action == rollout.STEP_UP and challenger_share(control) == 0.5

    ctl = controller()  # the actor restarted: it goes on from the saved state
    assert ctl.state.step == 1 and ctl.state.challenger == v2
    serve_minute(monitor, champion_rate=0.7, challenger_rate=0.7, n=150)
    tick(ctl, T0 + 240)
    assert challenger_share(control) == 1.0
    serve_minute(monitor, champion_rate=0.70, challenger_rate=0.80, n=3000)
    status = tick(ctl, T0 + 360)
    assert status.status == rollout.PROMOTED and "better" in status.last_decision.reason
    assert registry.alias_version(CHAMPION) == v2 and registry.alias_version(CHALLENGER) is None
    assert control.experiment.split == {"champion": 1.0, "challenger": 0.0}

    entries = [e for e in registry.promotion_ledger() if e.version == v2]
    assert [(e.event, e.by) for e in entries] == [
        ("set challenger", "training"),
        ("step", "rollout controller"),
        ("step", "rollout controller"),
        ("step", "rollout controller"),
        ("promote", "rollout controller"),
    ]
    promotion = entries[-1]
    assert promotion.from_version == 1 and promotion.evidence["n"]["challenger"] == 3300
    assert promotion.evidence["p_value"] < 0.05
    assert promotion.evidence["producers"]["challenger"] == {"tests": 3300}, "who reported the outcomes"
    shown = Console(record=True, width=250)
    shown.print(ledger_table(registry.promotion_ledger()))  # `mlsys models history`
    text = shown.export_text()
    assert "promote" in text and "rollout controller" in text and "n 3300/3300" in text


def test_a_harmful_challenger_is_rolled_back_to_rejected_at_once(served):
    cfg, registry, control, monitor, controller = served
    ctl = controller()
    v2 = registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    tick(ctl, T0)
    serve_minute(monitor, champion_rate=0.75, challenger_rate=0.55, n=400)
    status = tick(ctl, T0 + 10)  # before min_minutes: a breach does not wait
    assert status.status == rollout.ROLLED_BACK and "harm" in status.last_decision.reason
    assert registry.alias_version(REJECTED) == v2 and registry.alias_version(CHALLENGER) is None
    assert registry.alias_version(CHAMPION) == 1 and challenger_share(control) == 0.0
    reject = registry.promotion_ledger()[-1]
    assert (reject.event, reject.version, reject.by) == ("reject", v2, "rollout controller")
    assert reject.evidence["rate"]["challenger"] < reject.evidence["rate"]["control"]
    assert tick(ctl, T0 + 600).status == rollout.ROLLED_BACK  # stays out


def test_a_slow_challenger_is_rolled_back_once_enough_requests_show_it(served):
    cfg, registry, control, monitor, controller = served
    ctl = controller()
    registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    tick(ctl, T0)
    serve_minute(monitor, champion_rate=0.7, challenger_rate=0.7, n=20, p99=500.0)
    assert tick(ctl, T0 + 5).status == rollout.RUNNING  # 20 requests judge nothing yet
    serve_minute(monitor, champion_rate=0.7, challenger_rate=0.7, n=200, p99=500.0)
    status = tick(ctl, T0 + 10)
    assert status.status == rollout.ROLLED_BACK and "latency" in status.last_decision.reason


def test_manual_mode_reports_and_never_acts(served, tmp_path):
    cfg, registry, control, monitor, _ = served
    manual = cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"mode": "manual"})})
    ctl = RolloutController(manual, control=ActorDouble(control), monitor=ActorDouble(monitor))
    registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    status = tick(ctl, T0)
    assert status.status == "idle" and challenger_share(control) == 0.1


def test_an_operator_promoting_by_hand_ends_the_rollout(served):
    cfg, registry, control, monitor, controller = served
    ctl = controller()
    v2 = registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    tick(ctl, T0)
    serve_minute(monitor, champion_rate=0.7, challenger_rate=0.7, n=150)
    tick(ctl, T0 + 120)  # step up: the challenger at 50 %
    registry.promote(v2)  # `mlsys models promote 2`
    status = tick(ctl, T0 + 240)
    assert status.status == rollout.STOPPED and status.share == 0.0
    assert control.experiment.split == {"champion": 1.0, "challenger": 0.0}  # its share back
    assert [e.by for e in registry.promotion_ledger() if e.event == "promote"][-1] == "cli"


def shadow_first_challenger(served) -> tuple[RolloutController, int]:
    """A controller with `rollout.shadow_first` and a newly registered challenger (version 2)."""
    cfg, registry, control, monitor, _ = served
    shadowing = cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"shadow_first": True})})
    ctl = RolloutController(shadowing, control=ActorDouble(control), monitor=ActorDouble(monitor))
    v2 = registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    return ctl, v2


def test_with_shadow_first_a_challenger_is_scored_in_shadow_before_any_live_share(served):
    cfg, registry, control, monitor, _ = served
    ctl, v2 = shadow_first_challenger(served)
    status = tick(ctl, T0)
    experiment = control.experiment
    assert status.phase == "shadow" and status.share == 0.0
    assert experiment.shadow == CHALLENGER and CHALLENGER not in experiment.split
    assert experiment.split["champion"] == 1.0
    monitor.in_shadow(CHALLENGER, paired=40, label_agreement=0.9)
    status = tick(ctl, T0 + 120)
    assert status.phase == "shadow" and "40/100 predictions paired" in status.last_decision.reason
    monitor.in_shadow(CHALLENGER, paired=150, label_agreement=0.9)  # no outcomes yet: goes live as before
    status = tick(ctl, T0 + 180)
    experiment = control.experiment
    assert status.phase == "live" and status.step == 1 and experiment.shadow is None
    assert challenger_share(control) == pytest.approx(0.1)
    went_live = registry.promotion_ledger()[-1]
    assert went_live.version == v2 and "shadow done" in went_live.reason
    assert went_live.evidence["label_agreement"] == 0.9  # the shadow's evidence, in the ledger
    serve_minute(monitor, champion_rate=0.7, challenger_rate=0.7, n=150)
    assert tick(ctl, T0 + 300).last_decision.action == rollout.STEP_UP  # then the usual steps


def shadow_scored(monitor, *, outcomes: int, rate: float, paired: int) -> None:
    """The challenger's shadow predictions as the monitor reports them once their live requests'
    outcomes arrived (paired with the live answers, never answered)."""
    shown = {"outcomes": outcomes, "rate": rate, "requests": paired}
    monitor.shadow[CHALLENGER] = variant_summary(shown, paired=paired, label_agreement=0.8)


def test_in_shadow_a_challenger_worse_on_its_live_requests_outcomes_is_rolled_back_before_going_live(served):
    cfg, registry, control, monitor, _ = served
    ctl, v2 = shadow_first_challenger(served)
    tick(ctl, T0)
    monitor.count("champion", outcomes=400, rate=0.75, requests=400)  # the live answers' outcomes ...
    shadow_scored(monitor, outcomes=400, rate=0.75, paired=40)  # ... and the same requests' shadows
    status = tick(ctl, T0 + 30)
    assert status.phase == "shadow" and status.status == rollout.RUNNING
    assert status.last_decision.evidence["n"] == {"control": 400, "challenger": 400}
    monitor.count("champion", outcomes=1600, rate=0.75, requests=1600)
    shadow_scored(monitor, outcomes=2000, rate=0.63, paired=90)  # worse; too few paired to go live yet
    status = tick(ctl, T0 + 60)  # before min_minutes: harm does not wait
    assert (status.phase, status.status, status.share) == ("shadow", rollout.ROLLED_BACK, 0.0)
    assert status.last_decision.reason.startswith("in shadow, harm")
    assert registry.alias_version(REJECTED) == v2 and registry.alias_version(CHALLENGER) is None
    assert control.experiment.shadow is None and challenger_share(control) == 0.0, "it never answered"
    reject = registry.promotion_ledger()[-1]
    assert (reject.event, reject.version, reject.by) == ("reject", v2, "rollout controller")
    assert "in shadow, harm" in reject.reason and reject.evidence["n"] == {
        "control": 2000,
        "challenger": 2000,
    }
    assert reject.evidence["rate"]["challenger"] < reject.evidence["rate"]["control"]
    assert tick(ctl, T0 + 600).status == rollout.ROLLED_BACK  # stays out


def test_the_split_keeps_other_variants_shares():
    exp = ExperimentConfig(control="champion", split={"champion": 0.6, "challenger": 0.2, "other": 0.2})
    assert split_with(exp, 0.25).split == pytest.approx({"champion": 0.6, "challenger": 0.2, "other": 0.2})
    assert split_with(exp, 1.0).split == pytest.approx({"champion": 0.0, "challenger": 0.8, "other": 0.2})


def test_the_status_is_typed_and_its_json_keeps_the_routes_shape(served):
    from app.monitor_views import rollout_summary

    cfg, registry, control, monitor, controller = served
    ctl = controller()
    v2 = registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    status = tick(ctl, T0)
    assert isinstance(status, rollout.RolloutStatus)
    body = status.model_dump(mode="json")  # what GET /experiment/rollout answers
    assert set(body) == {
        "mode",
        "phase",
        "challenger",
        "status",
        "step",
        "steps",
        "share",
        "last_decision",
        "history",
    }
    assert set(body["last_decision"]) == {"at", "action", "share", "reason", "evidence"}
    assert body["steps"] == [10.0, 50.0, 100.0] and body["history"] == []
    assert rollout.RolloutStatus.model_validate(body) == status  # the HTTP client's copy
    assert rollout_summary(status).startswith(f"rollout of v{v2}: running at 10% of the traffic after 0")


class CountingMonitor:
    """The monitor as the controller reads it, over the real experiment counts (the per-key
    cap as the monitor applies it)."""

    def __init__(self, max_per_key: int):
        from app.monitoring.counts import ExperimentCounts

        self.counts = ExperimentCounts()
        self.counts.max_per_key = max_per_key

    def outcome(self, rid: str, variant: str, key: str, *, correct: bool) -> None:
        from tests.doubles import traffic_record

        rec = traffic_record(rid, experiment="exp-canary", variant=variant, score=0.9, label=1)
        self.counts.add_prediction({**rec.row(), "key": key})
        self.counts.add_feedback(rid, 1 if correct else 0, "crm")

    def report(self, experiment):
        return self.counts.report(experiment)

    def recent_p99(self, experiment, variant, last):
        return self.counts.recent_p99(experiment, variant, last)


def test_one_key_posting_500_correct_outcomes_adds_at_most_the_cap_and_the_ledger_says_so(served):
    cfg, registry, control, _, _ = served
    monitor = CountingMonitor(cfg.rollout.max_outcomes_per_key)
    ctl = RolloutController(cfg, control=ActorDouble(control), monitor=ActorDouble(monitor))
    for i in range(150):  # the control before the challenger
        monitor.outcome(f"before-{i}", CHAMPION, f"user-{i}", correct=i % 10 < 7)
    v2 = registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    tick(ctl, T0)
    for i in range(150):
        monitor.outcome(f"a-{i}", CHAMPION, f"user-{i}", correct=i % 10 < 7)
        monitor.outcome(f"b-{i}", CHALLENGER, f"user-{i}", correct=i % 10 < 7)
    for i in range(500):  # one client, always right
        monitor.outcome(f"loud-{i}", CHALLENGER, "one-client", correct=True)
    status = tick(ctl, T0 + 120)
    cap = cfg.rollout.max_outcomes_per_key
    evidence = status.last_decision.evidence
    assert evidence["n"]["challenger"] <= 150 + cap, "one key adds at most the cap to its arm"
    assert evidence["capped"]["challenger"]["key"] == 500 - cap
    assert status.last_decision.action == rollout.STEP_UP
    step = [e for e in registry.promotion_ledger() if e.version == v2 and e.event == "step"][-1]
    assert step.evidence["capped"]["challenger"]["key"] == 500 - cap
    assert step.evidence["caps"]["max_outcomes_per_key"] == cap


def test_the_policy_is_the_configs_rollout_section(tmp_path):
    from app.serving.rollout_inputs import policy

    cfg = make_config(tmp_path, rollout={"shadow_first": True, "shadow_min_outcomes": 2600, "steps": [5, 50]})
    p = policy(cfg)
    assert p.shadow_min_outcomes == 2600 and p.steps == (0.05, 0.5)
    assert p.alpha == cfg.serve.experiment.alpha and p.slo_p99_ms == cfg.monitor.p99_ms_alert


def test_a_second_controller_adopts_the_stored_rollout_and_never_overwrites_it(state_storage, served):
    """Two controllers on one state store (a restarted actor while the old one still runs):
    each looks at the stored rollout before deciding, and a write over a newer one is refused."""
    cfg, registry, control, monitor, controller = served
    first, second = controller(), controller()
    v2 = registry.register(
        quick_bundle(cfg, generate(1500, seed=2, defects=CLEAN), seed=2), params={}, alias=CHALLENGER
    )
    tick(first, T0)  # enters v2 and stores it
    serve_minute(monitor, champion_rate=0.7, challenger_rate=0.7, n=150)
    status = tick(second, T0 + 120)  # second never saw the entry: it adopts it, then steps up
    assert (status.challenger, status.step) == (v2, 2) and challenger_share(control) == 0.5
    with pytest.raises(StateConflict, match="another controller"):
        first._save()  # first's view (step 1) is stale: refused, and first adopts the stored one
    assert (first.state.challenger, first.state.step) == (v2, 1)
    assert controller().state.step == 1
