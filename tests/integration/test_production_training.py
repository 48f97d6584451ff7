"""Retraining learns from production: traffic logged by the real monitor actor, outcomes
reported to it, the production table built for a cutoff, and Ray Train fitting on the
production rows alone (`retrain.data: production`) or on them and the warehouse (`both`, the
demo's retrain). The registered version's lineage says which, and how many rows."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pandas as pd
import pytest
import ray

from app.data.etl import run_etl
from app.data.synthetic import Defects, generate, write_dataset
from app.features.store import FeatureClient
from app.monitoring.monitor import get_monitor
from app.monitoring.production import build_table, current, read_table
from app.monitoring.training_data import training_data
from app.pipeline import train_and_register
from app.registry.registry import Registry
from tests.configs import make_config
from tests.doubles import traffic_record
from tests.helpers import model_inputs

pytestmark = pytest.mark.integration
SERVED, LABELLED_EARLY, LABELLED_LATE = 1200, 900, 200
FAST = {"epochs": 2, "batch_size": 256, "num_workers": 1, "patience": 10}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A warehouse, and served drifted traffic with outcomes: LABELLED_EARLY before the cutoff,
    LABELLED_LATE after it, the rest never labelled."""
    tmp = tmp_path_factory.mktemp("production")
    cfg = make_config(tmp, mlp=FAST, model={"family": "mlp", "min_rows": 50}, registry={"gate_margin": 1.0})
    write_dataset(iter([generate(3000, seed=5, defects=Defects(0, 0, 0, 0, 0, 0))]), tmp / "raw.parquet")
    run_etl(cfg, str(tmp / "raw.parquet"))
    FeatureClient(cfg).apply()
    monitor = get_monitor(cfg)
    served = model_inputs(cfg, SERVED, seed=11, drift=1.0)
    label = cfg.dataset.label
    ids = [uuid.uuid4().hex for _ in range(SERVED)]
    features = served.drop(columns=[label]).to_dict("records")
    records = [
        traffic_record(rid, features=row, experiment="exp-1") for rid, row in zip(ids, features, strict=True)
    ]
    assert ray.get(monitor.ingest.remote(records)) == SERVED
    outcomes = served[label].astype(int).tolist()

    def report(first: int, last: int) -> None:
        answers = [monitor.feedback.remote(ids[i], outcomes[i], producer="tests") for i in range(first, last)]
        assert set(ray.get(answers)) == {"joined"}
        ray.get(monitor.flush.remote())

    report(0, LABELLED_EARLY)
    time.sleep(0.01)  # the cutoff lies strictly between the two batches' arrival times
    cutoff = datetime.now(timezone.utc)
    time.sleep(0.01)
    report(LABELLED_EARLY, LABELLED_EARLY + LABELLED_LATE)
    yield cfg, cutoff
    ray.kill(monitor)


def _tags(cfg, version: int) -> tuple[dict, dict]:
    """The registry's lineage record of a version, and its run's params."""
    registry = Registry(cfg)
    (info,) = [v for v in registry.versions() if v.version == version]
    return info.tags, registry.client.get_run(info.run_id).data.params


def test_production_trains_on_the_rows_labelled_before_the_cutoff(logged):
    cfg, cutoff = logged
    prod = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"data": "production"})})
    data = training_data(prod, cutoff=cutoff)
    assert data.table.rows == LABELLED_EARLY and current(prod).build == data.table.build
    splits = data.splits
    assert len(splits.train) + len(splits.valid) + len(splits.holdout) == LABELLED_EARLY
    outcome = train_and_register(prod, splits=splits)
    assert outcome.version is not None
    tags, params = _tags(prod, outcome.version)
    assert tags["lineage.training_data"] == "production" and params["training_data"] == "production"
    assert tags["lineage.production_rows"] == str(LABELLED_EARLY)
    assert tags["lineage.production_cutoff"] == data.table.cutoff
    assert "lineage.warehouse_rows" not in tags
    # The rows it trained on, read back at the recorded snapshot after a later build
    snapshot = int(tags["lineage.production_snapshot"])
    build_table(prod, cutoff=pd.Timestamp(cutoff) + pd.Timedelta(days=1))
    again = read_table(prod, replace(data.table, snapshot_id=snapshot))
    assert len(again) == LABELLED_EARLY and current(prod).snapshot_id != snapshot


def test_both_trains_on_the_warehouse_and_every_labelled_served_row(logged):
    cfg, _ = logged
    both = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"data": "both"})})
    outcome = train_and_register(both)  # the pipeline's and the retrain job's path: cutoff now
    assert outcome.version is not None
    tags, _ = _tags(both, outcome.version)
    assert tags["lineage.training_data"] == "both"
    assert tags["lineage.production_rows"] == str(LABELLED_EARLY + LABELLED_LATE)
    assert int(tags["lineage.warehouse_rows"]) > 2000
    assert tags["lineage.warehouse_snapshot"].isdigit() and tags["lineage.production_snapshot"].isdigit()


def test_both_before_any_outcome_falls_back_to_the_warehouse_in_one_line(logged):
    cfg, cutoff = logged
    data = training_data(cfg, cutoff=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert data.splits.lineage["training_data"] == "warehouse"
    assert data.note and "training on the warehouse alone" in data.note and "\n" not in data.note
