"""The drift monitor as a real detached Ray actor: kill and restart (snapshot + tail), drift,
retrain decisions."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import ray

from app.cluster.actors import ACTOR_NAMESPACE, actor_name
from app.data.synthetic import Defects, generate
from app.monitoring.monitor import MONITOR, DriftMonitor, get_monitor
from app.monitoring.traffic import PREDICTIONS, read_records, traffic_log
from app.registry.registry import CHAMPION, Registry
from tests.configs import make_config
from tests.doubles import traffic_record
from tests.helpers import model_inputs, quick_bundle, quick_tree_bundle

pytestmark = pytest.mark.integration
CLEAN = Defects(0, 0, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = make_config(
        tmp_path_factory.mktemp("monitoring"),
        monitor={"window": 500},
        # Two drifted windows make an incident; here they arrive within seconds of each other.
        retrain={
            "schedule": "none",
            "min_samples": 400,
            "cooldown_minutes": 60,
            "drift_windows": 2,
            "drift_minutes": 0,
        },
    )
    Registry(cfg).register(
        quick_bundle(cfg, generate(3000, seed=1, defects=CLEAN), seed=1), params={}, alias=CHAMPION
    )
    return cfg


def records(cfg, n, *, seed, drift=0.0):
    frame = model_inputs(cfg, n, seed=seed, drift=drift).drop(columns=[cfg.dataset.label])
    return [
        traffic_record(uuid.uuid4().hex, features=row, experiment="exp-1") for row in frame.to_dict("records")
    ]


def test_kill_and_restart_loses_and_double_counts_no_persisted_record(cfg):
    monitor = get_monitor(cfg)
    sent = [records(cfg, 300, seed=s) for s in range(3)]
    for batch in sent[:2]:
        assert ray.get(monitor.ingest.remote(batch)) == 300
    ray.get(monitor.maintain.remote())  # flushed and snapshotted: a restart reads it plus the tail
    assert ray.get(monitor.ingest.remote(sent[2])) == 300
    assert ray.get(monitor.flush.remote()) == 300
    ray.kill(monitor, no_restart=False)  # a crash: Ray restarts it, its memory is gone
    time.sleep(1)
    monitor = ray.get_actor(actor_name(MONITOR, str(cfg.storage.path())), namespace=ACTOR_NAMESPACE)
    exp = cfg.serve.experiment  # typed, as the ingress passes it
    deadline = time.time() + 60
    while True:  # calls fail until the restarted actor is up
        try:
            report = ray.get(monitor.report.remote(exp))
            break
        except ray.exceptions.RayActorError:
            assert time.time() < deadline
            time.sleep(0.5)
    assert report.variants["champion"].requests == 900  # rebuilt from the snapshot + the log
    rebuilt = ray.get(monitor.drift.remote()).traffic_log.rebuilt
    assert rebuilt.snapshot and rebuilt.records_read == 300  # only what the snapshot lacks
    # A replica re-delivers a batch it was unsure about, plus new records.
    again = sent[2][:100] + records(cfg, 100, seed=9)
    assert ray.get(monitor.ingest.remote(again)) == 100
    ray.get(monitor.flush.remote())
    assert ray.get(monitor.report.remote(exp)).variants["champion"].requests == 1000
    persisted = read_records(cfg.storage.path("traffic"), PREDICTIONS)
    assert len(persisted) == 1000 and persisted["request_id"].is_unique
    drift = ray.get(monitor.drift.remote())
    assert drift.reference_version == 1 and drift.variants["champion"].n == 500  # rebuilt windows too


def test_drifted_traffic_alerts_and_one_incident_submits_one_retrain(cfg, tmp_path):
    submitted = []

    def submit(cfg, reason):  # stands in for the Jobs API client; the real one is tested with a cluster
        submitted.append(reason)
        return f"job-{len(submitted)}"

    monitor = DriftMonitor(
        cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"root": str(tmp_path)})}),
        submit=submit,
    )
    monitor.tracker.follow(1, Registry(cfg).load(CHAMPION).profile)
    asyncio.run(monitor.ingest(records(cfg, 500, seed=3)))
    checked = monitor.check(now=1000)
    assert not checked.drift.alert and checked.decision.trigger is None and submitted == []
    asyncio.run(monitor.ingest(records(cfg, 500, seed=4, drift=1.0)))
    checked = monitor.check(now=1060)
    variant = checked.drift.variants["champion"]
    assert checked.drift.alert and {"income", "country"} <= set(variant.drifted)
    assert variant.features["income"].psi > 0.2
    assert (
        checked.decision.trigger is None and "retrain.drift_windows" in checked.decision.reason
    )  # one burst
    asyncio.run(monitor.ingest(records(cfg, 500, seed=5, drift=1.0)))
    checked = monitor.check(now=1120)
    assert (checked.decision.trigger, checked.decision.job_id) == ("drift", "job-1")  # it persists
    asyncio.run(monitor.ingest(records(cfg, 500, seed=6, drift=1.0)))
    monitor.check(now=1180)  # still drifting: the same incident
    assert submitted and len(submitted) == 1
    assert monitor.drift().retrain.submitted[0].job_id == "job-1"


def _storage_copy(cfg, root):
    return cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"root": str(root)})})


def test_records_accepted_but_not_yet_flushed_survive_the_monitors_death(cfg, tmp_path):
    from app.monitoring.traffic import FEEDBACK

    local = _storage_copy(cfg, tmp_path)
    first = DriftMonitor(local)
    batch = records(cfg, 200, seed=11)
    assert asyncio.run(first.ingest(batch, dropped=7)) == 200  # the flusher never runs: the loop ends
    assert asyncio.run(first.feedback(batch[0].request_id, 1, producer="tests")) == "joined"
    assert not read_records(traffic_log(local.storage), PREDICTIONS).shape[0]  # nothing in parquet yet
    wal = local.storage.wal / f"{PREDICTIONS}.jsonl"
    with wal.open("a") as f:
        f.write('{"request_id": "torn')  # killed mid-write

    second = DriftMonitor(local)  # the restarted actor: the first one's memory is gone
    exp = local.serve.experiment.model_dump()  # a mapping of its fields is accepted too
    champion = asyncio.run(second.report(exp)).variants["champion"]
    assert champion.requests == 200 and champion.outcomes == 1
    assert len(read_records(traffic_log(local.storage), PREDICTIONS)) == 200
    assert len(read_records(traffic_log(local.storage), FEEDBACK)) == 1
    assert wal.read_text() == ""
    third = DriftMonitor(local)  # recovered once: a second restart counts nothing twice
    assert asyncio.run(third.report(exp)).variants["champion"].requests == 200


def test_a_replicas_records_reach_a_monitor_killed_mid_stream(cfg, tmp_path):
    from app.monitoring.shipper import TrafficShipper

    local = _storage_copy(cfg, tmp_path)
    monitor = get_monitor(local)
    shipper = TrafficShipper(lambda b, d: monitor.ingest.remote(b, d), batch_size=50, retry_after_s=0.2)
    sent = records(cfg, 600, seed=12)
    for r in sent[:300]:
        shipper.add(r)
    shipper.pump()
    ray.kill(monitor, no_restart=False)  # calls in flight fail; later ones wait or fail until it is back
    for r in sent[300:]:
        shipper.add(r)
    deadline = time.time() + 90
    while shipper.buffer or shipper.in_flight:
        assert time.time() < deadline, (len(shipper.buffer), len(shipper.in_flight))
        shipper.pump()
        time.sleep(0.05)
    assert shipper.dropped_total == 0
    ray.get(monitor.flush.remote())
    persisted = read_records(traffic_log(local.storage), PREDICTIONS)
    assert len(persisted) == 600 and persisted["request_id"].is_unique
    ray.kill(monitor, no_restart=True)


def test_a_quiet_monitor_still_checks_and_takes_a_reloaded_config(cfg, tmp_path):
    """No record ever arrives: the housekeeping loop runs from the actor's start (a scheduled
    retrain on a quiet service), and `mlsys monitor reload` changes its thresholds live."""
    local = _storage_copy(cfg, tmp_path)
    monitor = get_monitor(local)
    deadline = time.time() + 60
    while not ray.get(monitor.drift.remote()).retrain.decisions:  # the first check: ~10 s
        assert time.time() < deadline, "no check ran on a quiet monitor"
        time.sleep(1)
    changed = ray.get(
        monitor.reload.remote(
            {**local.monitor.model_dump(), "psi_alert": 0.35},
            {**local.retrain.model_dump(), "schedule": "every 30m"},
        )
    )
    assert changed.changed == {"monitor.psi_alert": 0.35, "retrain.schedule": "every 30m"}
    assert ray.get(monitor.drift.remote()).psi_alert == 0.35
    ray.kill(monitor, no_restart=False)  # a restart keeps the reloaded sections
    deadline = time.time() + 60
    while True:
        try:
            assert ray.get(monitor.drift.remote()).psi_alert == 0.35
            break
        except ray.exceptions.RayActorError:
            assert time.time() < deadline
            time.sleep(0.5)
    ray.kill(monitor, no_restart=True)


def test_no_retrain_is_submitted_while_the_last_one_runs(cfg, tmp_path):
    submitted, running = [], ["job-1"]
    monitor = DriftMonitor(
        _storage_copy(cfg, tmp_path),
        submit=lambda cfg, reason: submitted.append(reason) or "job-2",
        job_running=lambda cfg, state: running[-1],
    )
    monitor.tracker.follow(1, Registry(cfg).load(CHAMPION).profile)
    asyncio.run(monitor.ingest(records(cfg, 500, seed=4, drift=1.0)))
    checked = monitor.check(now=1000)
    assert checked.drift.alert and submitted == []
    assert checked.decision.reason == "the last retrain (job job-1) is still running"
    assert monitor.drift().retrain.decisions[-1] == checked.decision
    running.append(None)  # it ended
    asyncio.run(monitor.ingest(records(cfg, 500, seed=5, drift=1.0)))
    monitor.check(now=1060)
    assert len(submitted) == 1


def test_feedback_for_a_forgotten_prediction_is_recorded_for_training_not_counted(cfg, tmp_path):
    from app.monitoring.traffic import FEEDBACK

    monitor = DriftMonitor(_storage_copy(cfg, tmp_path))
    assert asyncio.run(monitor.feedback("long-gone", 1, False, producer="tests")) == "recorded"
    assert asyncio.run(monitor.feedback("on-its-way", 0, True, producer="tests")) == "pending"
    monitor.flush()
    kept = read_records(monitor.root, FEEDBACK)
    assert sorted(kept["request_id"]) == ["long-gone", "on-its-way"]
    # "long-gone" never waits for a prediction that will not come: only "on-its-way" does
    assert monitor.drift().traffic_log.pending_feedback == 1


def test_concept_drift_is_caught_from_outcomes_alone_and_retrains_once_it_persists(cfg, tmp_path):
    """The inputs keep their distribution (no PSI alert); the outcomes stop following the
    scores: the champion's labelled windows fall under the band learned from its holdout."""
    from app.model.predictor import Predictor
    from app.monitoring import bands
    from app.training.evaluate import binary_metrics

    local = _storage_copy(cfg, tmp_path).model_copy(
        update={"monitor": cfg.monitor.model_copy(update={"performance_window": 250})}
    )
    label = cfg.dataset.label
    bundle = quick_tree_bundle(local, generate(5000, seed=1, defects=CLEAN), seed=1, rounds=60)
    predictor = Predictor.from_bundle(bundle)
    holdout = model_inputs(local, 3000, seed=2)
    scores = predictor.predict_proba(holdout)
    bundle.metrics = {"holdout": binary_metrics(holdout[label].to_numpy(int), scores)}
    bundle.profile["bands"] = bands.reference_bands(
        holdout, bundle.profile, holdout[label], scores, window=500, performance_window=250
    )  # fmt: skip
    Registry(local).register(bundle, params={}, alias=CHAMPION)
    submitted = []
    monitor = DriftMonitor(local, submit=lambda cfg, reason: submitted.append(reason) or "job-1")

    def serve_with_outcomes(n, *, seed, concept=0.0):
        # Sampled from a larger set: a window holds hundreds of users, as live traffic does.
        rows = model_inputs(local, 8 * n, seed=seed, concept=concept).sample(n, random_state=seed)
        p = predictor.predict_proba(rows)
        sent = [
            traffic_record(uuid.uuid4().hex, features=f, score=float(s), label=int(s >= 0.5), experiment="exp-1")
            for f, s in zip(rows.drop(columns=[label]).to_dict("records"), p, strict=True)
        ]  # fmt: skip
        asyncio.run(monitor.ingest(sent))
        for rec, y in zip(sent, rows[label], strict=True):
            assert asyncio.run(monitor.feedback(rec.request_id, int(y), producer="crm")) == "joined"

    serve_with_outcomes(500, seed=3)
    checked = monitor.check(now=1000)
    window = checked.drift.performance["champion"]
    assert window.band == "learned" and not window.decayed and not checked.drift.performance_alert
    serve_with_outcomes(750, seed=4, concept=1.0)
    checked = monitor.check(now=1120)
    window = checked.drift.performance["champion"]
    assert window.decayed and window.auc < window.auc_low and checked.drift.performance_alert, window
    assert window.estimated_auc > window.auc_low, "the label-free estimate does not see it"
    assert not checked.drift.alert, checked.drift.variants["champion"].drifted
    assert checked.decision.trigger == "decay" and "3 consecutive windows" in checked.decision.reason
    serve_with_outcomes(250, seed=5, concept=1.0)
    assert monitor.check(now=1180).decision.trigger is None and len(submitted) == 1  # one incident
