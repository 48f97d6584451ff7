"""The experiment counts: idempotent, joined to feedback, bounded, restored from their state,
and the typed experiment report and recent latency computed from them."""

from __future__ import annotations

import numpy as np
import pytest

from app.config import ExperimentConfig
from app.monitoring.counts import ExperimentCounts
from app.monitoring.counts_state import from_state, to_state
from app.monitoring.experiment import ExperimentReport, format_lift
from tests.doubles import traffic_record

EXPERIMENT = ExperimentConfig(name="e")


def record(rid, variant="champion", label=1, status="ok", score=0.7, latency_ms=1.0, shadow=False):
    """A replica's record as the monitor counts it (the traffic log's row)."""
    failed = status != "ok"
    return traffic_record(
        rid,
        features={"age": 30.0},
        variant=variant,
        score=None if failed else score,
        label=None if failed else label,
        status=status,
        latency_ms=latency_ms,
        shadow=shadow,
    ).row()


def test_redelivered_predictions_and_feedback_count_once():
    counts = ExperimentCounts()
    assert counts.add_prediction(record("a"))
    assert not counts.add_prediction(record("a"))
    assert counts.add_feedback("a", 1, "tests") == "joined"
    assert counts.add_feedback("a", 0, "tests") == "duplicate"
    s = counts.for_experiment("e")["champion"]
    assert (s.requests, s.outcomes, s.correct, s.positives) == (1, 1, 1, 1)


def test_feedback_before_its_prediction_waits_and_then_joins():
    counts = ExperimentCounts()
    assert counts.add_feedback("b", 0, "tests") == "pending"
    counts.add_prediction(record("b", variant="challenger", label=1))
    s = counts.for_experiment("e")["challenger"]
    assert (s.outcomes, s.correct, s.positives) == (1, 0, 0)
    assert not counts.pending


def test_errors_are_counted_apart_from_requests():
    counts = ExperimentCounts()
    counts.add_prediction(record("c", status="error"))
    s = counts.for_experiment("e")["champion"]
    assert (s.requests, s.errors) == (0, 1)


def test_memory_stays_bounded_and_dropped_pending_feedback_is_counted():
    counts = ExperimentCounts(capacity=100, pending_capacity=50)
    for i in range(1000):
        counts.add_prediction(record(f"r{i}"))
        counts.add_feedback(f"x{i}", 1, "tests")
    assert len(counts.predictions) == 100 and len(counts.pending) == 50
    assert counts.pending_dropped == 950 and next(iter(counts.pending)) == "x950"  # the oldest went first


def test_counts_survive_their_state_round_trip():
    counts = ExperimentCounts(capacity=3)
    for i in range(5):
        counts.add_prediction(record(f"r{i}", variant="challenger" if i % 2 else "champion"))
    counts.add_feedback("r4", 1, "tests")
    counts.add_feedback("later", 0, "tests")
    back = from_state(to_state(counts), capacity=3, pending_capacity=10)
    assert back.for_experiment("e") == counts.for_experiment("e")
    assert (
        back.predictions == counts.predictions
        and back.labelled == {"r4"}
        and dict(back.pending) == {"later": (0, "tests")}
    )
    assert (
        back.add_feedback("r4", 1, "tests") == "duplicate" and back.add_feedback("r3", 0, "tests") == "joined"
    )


def test_shadow_predictions_count_apart_paired_with_the_live_answer():
    counts = ExperimentCounts()
    pairs = [(0.9, 0.8), (0.2, 0.3), (0.7, 0.4), (0.1, 0.05)]  # (live, shadow) scores
    for i, (live, shadow) in enumerate(pairs):
        records = [
            record(f"r{i}", score=live, label=int(live >= 0.5)),
            record(f"r{i}", variant="challenger", score=shadow, label=int(shadow >= 0.5), shadow=True),
        ]
        for r in records[:: -1 if i % 2 else 1]:  # a single /predict logs its shadow first
            counts.add_prediction(r)
    counts.add_feedback("r0", 1, "tests")
    report = counts.report(EXPERIMENT)
    assert set(report.variants) == {"champion"} and not report.comparisons  # shadows are not live
    shadow = report.shadow["challenger"]
    assert shadow.requests == 4 and shadow.paired == 4
    assert shadow.outcomes == 1 and shadow.accuracy == 1.0  # r0's outcome, its shadow said 1 too
    assert shadow.label_agreement == 0.75  # 0.7 -> 1 live, 0.4 -> 0 shadow
    assert shadow.mean_abs_score_diff == pytest.approx(np.mean([0.1, 0.1, 0.3, 0.05]))
    assert shadow.score_correlation == pytest.approx(np.corrcoef(*zip(*pairs, strict=True))[0, 1])
    assert shadow.latency_diff_ms.p50 == 0.0
    assert report.variants["champion"].estimated.accuracy == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.9]))
    back = from_state(to_state(counts))
    assert back.for_experiment("e") == counts.for_experiment("e")  # pairs and samples survive a restart


def test_the_experiment_report_is_typed_and_compares_each_challenger_with_the_control():
    counts = ExperimentCounts()
    for i in range(400):
        variant = "champion" if i % 2 else "challenger"
        counts.add_prediction(record(f"r{i}", variant=variant, label=1, latency_ms=float(i % 10)))
        counts.add_feedback(f"r{i}", int(i % 4 == 1) if variant == "champion" else 1, "tests")
    counts.add_feedback("not-yet", 1, "tests")
    counts.add_prediction(record("other", variant="champion") | {"experiment": "another"})
    report = counts.report(EXPERIMENT, dropped_records=3, now=1234.0)
    assert isinstance(report, ExperimentReport)
    assert (report.experiment, report.control, report.metric) == ("e", "champion", "accuracy")
    assert (report.dropped_records, report.pending_feedback, report.generated_at) == (3, 1, 1234.0)
    champion, challenger = report.variants["champion"], report.variants["challenger"]
    assert (champion.requests, champion.outcomes, champion.successes) == (200, 200, 100)
    assert challenger.rate == 1.0 and challenger.model_versions == (1,)
    comparison = report.comparisons["challenger"]
    assert comparison.relative_improvement == pytest.approx(1.0) and comparison.decision == "promote"
    assert format_lift(comparison).startswith("+100.0% [") and format_lift(report.comparisons.get("x")) == "-"
    again = ExperimentReport.model_validate_json(report.model_dump_json())  # the HTTP client's copy
    assert again == report
    with pytest.raises(ValueError):
        report.experiment = "renamed"  # frozen: a report is a message, not a shared object


def test_recent_p99_reads_only_the_last_requests_of_a_variant():
    counts = ExperimentCounts()
    for i in range(100):
        counts.add_prediction(record(f"slow{i}", latency_ms=500.0))
    for i in range(50):
        counts.add_prediction(record(f"fast{i}", latency_ms=10.0))
    assert counts.recent_p99("e", "champion", 50) == pytest.approx(10.0)
    assert counts.recent_p99("e", "champion", 150) == pytest.approx(500.0)
    assert counts.recent_p99("e", "champion", 0) is None and counts.recent_p99("e", "challenger", 10) is None


def test_each_outcome_is_counted_for_its_producer_through_a_pending_wait_and_a_restart():
    counts = ExperimentCounts()
    for i in range(3):
        counts.add_prediction(record(f"p{i}"))
    counts.add_feedback("p0", 1, "crm")
    counts.add_feedback("p1", 0, "billing")
    counts.add_feedback("p3", 1, "billing")  # before its prediction: waits with its producer
    back = from_state(to_state(counts))
    back.add_prediction(record("p3"))
    back.add_feedback("p2", 1, "crm")
    report = back.report(EXPERIMENT)
    assert report.variants["champion"].outcomes_by_producer == {"billing": 2, "crm": 2}
    assert report.model_dump()["variants"]["champion"]["outcomes_by_producer"] == {"billing": 2, "crm": 2}


def keyed(rid: str, key: str, *, variant: str = "challenger", status: str = "ok", latency_ms=1.0) -> dict:
    """A prediction row with its client key (the assignment key the per-key cap counts by)."""
    score, label = (0.9, 1) if status == "ok" else (None, None)
    rec = traffic_record(rid, variant=variant, status=status, latency_ms=latency_ms, score=score, label=label)
    return {**rec.row(), "key": key}


def test_a_request_counts_once_per_variant_and_once_as_failed_however_many_rows_failed():
    counts = ExperimentCounts()
    # One 10,000-row request: the challenger failed on 3 rows; the first failed row is marked.
    counts.add_prediction(keyed("big-e0", "k", status="error", latency_ms=12.0))
    for i in range(1, 3):
        counts.add_prediction(keyed(f"big-e{i}", "k", status="error", latency_ms=None))
    for i in range(9997):
        counts.add_prediction(keyed(f"big-{i}", "k", latency_ms=None))
    for i in range(3):  # three one-row requests, answered
        counts.add_prediction(keyed(f"one-{i}", f"k{i}"))
    s = counts.stats["e", "challenger"]
    assert (s.requests_reached, s.requests_failed, s.errors, s.requests) == (4, 1, 3, 10_000)
    summary = counts.report(ExperimentConfig(name="e", split={"champion": 0.5, "challenger": 0.5}))
    assert summary.variants["challenger"].error_rate == 0.25
    assert len(s.latency_ms) == 4, "every request's wait, the failed one's too"


def test_one_key_adds_at_most_the_cap_to_a_variants_outcomes_and_the_rest_counts_as_capped():
    counts = ExperimentCounts()
    counts.max_per_key = 20
    for i in range(500):
        counts.add_prediction(keyed(f"r{i}", "one-client"))
        assert counts.add_feedback(f"r{i}", 1, "crm") == "joined"
    for i in range(30):  # other clients are not held back by it
        counts.add_prediction(keyed(f"o{i}", f"client-{i}"))
        counts.add_feedback(f"o{i}", 0, "crm")
    s = counts.stats["e", "challenger"]
    assert (s.outcomes, s.correct, s.capped) == (50, 20, {"key": 480})
    assert s.producers == {"crm": 50} and s.correct_by_producer == {"crm": 20}
    back = from_state(to_state(counts))
    back.max_per_key = 20
    back.add_prediction(keyed("r-late", "one-client"))
    back.add_feedback("r-late", 1, "crm")
    t = back.stats["e", "challenger"]
    assert (t.outcomes, t.capped, t.requests_reached) == (50, {"key": 481}, 531), "the cap survives a restart"
    summary = back.report(ExperimentConfig(name="e", split={"champion": 0.5, "challenger": 0.5}))
    assert summary.variants["challenger"].capped == {"key": 481}
    assert summary.variants["challenger"].successes_by_producer == {"crm": 20}


def test_the_per_key_cap_counts_per_model_version_and_forgets_the_oldest_keys(monkeypatch):
    from app.monitoring import counts as module

    monkeypatch.setattr(module, "KEYS", 3)
    counts = ExperimentCounts()
    counts.max_per_key = 1
    for i, key in enumerate(["a", "a", "b", "c", "d"]):
        counts.add_prediction(keyed(f"r{i}", key))
        counts.add_feedback(f"r{i}", 1, "crm")
    assert counts.stats["e", "challenger"].capped == {"key": 1} and len(counts.per_key) == 3
    counts.add_prediction({**keyed("new-version", "a"), "model_version": 2})
    counts.add_feedback("new-version", 1, "crm")
    assert counts.stats["e", "challenger"].outcomes == 5, "a new model version starts its keys at zero"


def test_requests_without_a_key_never_enter_the_per_key_tally():
    """A keyless request is its own key (its request id): tallying those would push the sticky
    keys the cap is for out of the bounded tally, and bloat every snapshot."""
    counts = ExperimentCounts()
    counts.max_per_key = 1
    for i in range(50):
        counts.add_prediction(keyed(f"r{i}", f"r{i}"))
        counts.add_feedback(f"r{i}", 1, "crm")
    assert counts.per_key == {} and counts.stats["e", "challenger"].outcomes == 50


def live_and_shadow(counts: ExperimentCounts, rid: str, *, live_label: int, shadow_label: int, key=None):
    """One request answered by the champion and scored in shadow by the challenger."""
    live = record(rid, label=live_label, score=0.9 if live_label else 0.1)
    shadow = record(
        rid, variant="challenger", label=shadow_label, score=0.9 if shadow_label else 0.1, shadow=True
    )
    for rec in (live, shadow):
        counts.add_prediction(rec if key is None else {**rec, "key": key})


def test_a_shadow_prediction_is_scored_against_the_outcome_of_its_live_request():
    counts = ExperimentCounts()
    seen = []
    counts.on_outcome = lambda *args: seen.append(args)
    live_and_shadow(counts, "r0", live_label=1, shadow_label=0)
    live_and_shadow(counts, "r1", live_label=1, shadow_label=1)
    assert counts.add_feedback("r0", 1, "crm") == "joined"
    assert counts.add_feedback("r1", 1, "billing") == "joined"
    live, shadow = counts.stats["e", "champion"], counts.stats["e", "challenger:shadow"]
    assert (live.outcomes, live.correct, live.positives) == (2, 2, 2)
    assert (shadow.outcomes, shadow.correct, shadow.positives) == (2, 1, 2)
    assert list(shadow.labels) == [1, 1] and list(shadow.scores) == [0.1, 0.9]
    assert shadow.producers == {"crm": 1, "billing": 1} and shadow.correct_by_producer == {
        "crm": 0,
        "billing": 1,
    }
    assert shadow.positives_by_producer == {"crm": 1, "billing": 1}
    assert ("e", "challenger") not in counts.stats, "a shadow outcome never counts as a live one"
    assert [(v, label) for _, v, _, _, label in seen] == [("champion", 1), ("champion", 1)], "live only"
    report = counts.report(EXPERIMENT)
    assert report.shadow["challenger"].outcomes == 2 and report.shadow["challenger"].rate == 0.5
    assert set(report.variants) == {"champion"} and not report.comparisons


def test_a_shadow_outcome_counts_once_however_the_outcome_is_delivered():
    counts = ExperimentCounts()
    live_and_shadow(counts, "r0", live_label=1, shadow_label=1)
    counts.add_feedback("r0", 1, "crm")
    assert counts.add_feedback("r0", 1, "crm") == "duplicate"
    assert counts.add_feedback("r0-shadow", 1, "crm") == "duplicate"  # already scored from the live one
    counts.add_prediction(record("r0", variant="challenger", shadow=True))  # the shadow re-delivered
    assert (
        counts.stats["e", "challenger:shadow"].outcomes == 1 and counts.stats["e", "champion"].outcomes == 1
    )


def test_an_outcome_before_the_shadow_prediction_waits_for_it():
    counts = ExperimentCounts()
    seen = []
    counts.on_outcome = lambda *args: seen.append(args)
    assert counts.add_feedback("early", 0, "crm") == "pending"  # before any prediction
    counts.add_prediction(record("early", label=0, score=0.1))  # joins the live prediction
    counts.add_feedback("late", 1, "crm")
    counts.add_prediction(record("late", label=1))
    counts.add_feedback("late", 1, "crm")  # joins before its shadow copy was scored
    for rid, label in (("early", 1), ("late", 1)):  # the shadow copies arrive last
        counts.add_prediction(record(rid, variant="challenger", label=label, shadow=True))
    shadow = counts.stats["e", "challenger:shadow"]
    assert (shadow.outcomes, shadow.correct) == (2, 1)
    assert not counts.awaiting_shadow and len(seen) == 2


def test_the_per_key_cap_tallies_a_shadow_variant_apart_from_the_live_one():
    counts = ExperimentCounts()
    counts.max_per_key = 3
    for i in range(5):
        live_and_shadow(counts, f"r{i}", live_label=1, shadow_label=1, key="one-client")
        counts.add_feedback(f"r{i}", 1, "crm")
    live, shadow = counts.stats["e", "champion"], counts.stats["e", "challenger:shadow"]
    assert (live.outcomes, live.capped) == (3, {"key": 2})
    assert (shadow.outcomes, shadow.capped) == (3, {"key": 2}), "its own tally of 3, not the live one's"


def test_shadow_outcomes_survive_the_state_round_trip():
    counts = ExperimentCounts()
    counts.max_per_key = 1
    live_and_shadow(counts, "r0", live_label=1, shadow_label=0, key="k")
    live_and_shadow(counts, "r1", live_label=1, shadow_label=0, key="k")
    counts.add_feedback("r0", 1, "crm")
    back = from_state(to_state(counts))
    back.max_per_key = 1
    assert back.for_experiment("e") == counts.for_experiment("e") and back.labelled == {"r0", "r0-shadow"}
    assert back.add_feedback("r0", 1, "crm") == "duplicate"
    back.add_feedback("r1", 1, "crm")  # the key's one shadow outcome is counted already
    shadow = back.stats["e", "challenger:shadow"]
    assert (shadow.outcomes, shadow.correct, shadow.capped) == (1, 0, {"key": 1})
