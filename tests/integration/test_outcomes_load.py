"""`mlsys outcomes load` against a real monitor actor: the loaded outcomes are counted for their
producer in the experiment report, every row is joined or quarantined, and loading the same
file again changes nothing."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import ray

from app.monitoring.monitor import get_monitor
from app.monitoring.outcome_join import ALREADY_LABELLED, LATE, UNKNOWN_REQUEST_ID, no_prediction
from app.monitoring.outcome_load import MonitorUnreachable, load_outcomes
from app.monitoring.traffic import FEEDBACK, read_records, traffic_log
from tests.configs import make_config
from tests.doubles import traffic_record

pytestmark = pytest.mark.integration


def test_loaded_outcomes_reach_the_running_monitor_once_counted_for_their_producer(tmp_path):
    cfg = make_config(tmp_path, outcomes={"late_days": 7})
    monitor = get_monitor(cfg)
    try:
        now = datetime.now(timezone.utc)
        served = [
            traffic_record(f"r{i}", experiment="exp-1", variant=v, at=now - timedelta(hours=2), label=1)
            for i, v in enumerate(["champion"] * 6 + ["challenger"] * 4)
        ]
        served.append(traffic_record("old", experiment="exp-1", at=now - timedelta(days=9)))
        served.append(
            dataclasses.replace(
                traffic_record("e1", experiment="exp-1", at=now - timedelta(hours=3)),
                key="42",
                by_entity=True,
            )
        )
        assert ray.get(monitor.ingest.remote(served)) == len(served)
        outcomes = pd.DataFrame(
            {
                "request_id": [f"r{i}" for i in range(10)] + ["r0", "nope", "old", None, None],
                "user_id": [None] * 13 + [42, 43],
                "event_timestamp": [None] * 13 + [now - timedelta(hours=1)] * 2,
                "label": [1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1],
            }
        )
        source = tmp_path / "exports"
        source.mkdir()
        outcomes.iloc[:8].to_csv(source / "part-1.csv", index=False)
        outcomes.iloc[8:].to_parquet(source / "part-2.parquet")

        first = load_outcomes(cfg, str(source), "billing")  # joins the running cluster's monitor
        assert (first.loaded, first.counted, first.recorded, first.files) == (15, 11, 0, 2)
        assert first.loaded == first.joined + first.rows_quarantined
        assert first.quarantined == {
            "duplicate of an earlier row": 1,
            UNKNOWN_REQUEST_ID: 1,
            LATE: 1,
            no_prediction(cfg.dataset): 1,
        }
        report = ray.get(monitor.report.remote(cfg.serve.experiment))
        champion, challenger = report.variants["champion"], report.variants["challenger"]
        assert (champion.outcomes, challenger.outcomes) == (7, 4)  # r0..r5 and e1; r6..r9
        assert champion.outcomes_by_producer == {"billing": 7}
        assert challenger.outcomes_by_producer == {"billing": 4}
        assert champion.rate == pytest.approx(4 / 7)  # accuracy: every prediction said 1

        again = load_outcomes(cfg, str(source), "billing")
        assert (again.loaded, again.joined) == (15, 0) and again.quarantined[ALREADY_LABELLED] == 11
        assert again.loaded == again.joined + again.rows_quarantined
        after = ray.get(monitor.report.remote(cfg.serve.experiment))
        assert after.variants["champion"].outcomes_by_producer == {"billing": 7}
        assert after.variants["challenger"].outcomes == 4
        logged = read_records(traffic_log(cfg.storage), FEEDBACK)
        assert len(logged) == 11 and set(logged["producer"]) == {"billing"}
        elsewhere = make_config(tmp_path / "no-service")  # a storage root no service runs for
        with pytest.raises(MonitorUnreachable, match="no drift monitor runs"):
            load_outcomes(elsewhere, str(source), "billing")
    finally:
        ray.kill(monitor, no_restart=True)
