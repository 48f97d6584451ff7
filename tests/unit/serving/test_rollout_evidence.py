"""What the rollout reads of the experiment report: counts and producers since the challenger went live."""

from __future__ import annotations

from app.config import ExperimentConfig
from app.monitoring.counts import ExperimentCounts
from app.serving.rollout_evidence import arm, counts, producers
from tests.doubles import traffic_record

EXPERIMENT = ExperimentConfig(name="e", split={"champion": 0.5, "challenger": 0.5})


def outcome(c: ExperimentCounts, rid: str, variant: str, producer: str) -> None:
    c.add_prediction(traffic_record(rid, variant=variant, features={"age": 30.0}).row())
    c.add_feedback(rid, 1, producer)


def test_the_evidence_counts_only_what_came_in_since_the_challenger_went_live():
    c = ExperimentCounts()
    for i in range(3):
        outcome(c, f"old{i}", "champion", "crm")  # before the rollout
    entry = c.report(EXPERIMENT)
    at_entry = {"champion": counts(entry, "champion"), "producers": producers(entry)}
    outcome(c, "new0", "champion", "billing")
    outcome(c, "new1", "challenger", "crm")
    now = c.report(EXPERIMENT)
    assert producers(now, at_entry["producers"]) == {"champion": {"billing": 1}, "challenger": {"crm": 1}}
    assert arm(counts(now, "champion"), at_entry["champion"]).outcomes == 1
