"""What a training run learns from: production rows as model-input rows, and the refusal when
`retrain.data: production` finds no labelled row (no Ray, no Feast on these paths)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.features.transforms import feature_spec
from app.monitoring import production
from app.monitoring.traffic import FEEDBACK, PREDICTIONS, traffic_log, write_records
from app.monitoring.training_data import production_frame, training_data
from app.training.dataset import TrainingDataError
from tests.configs import make_config
from tests.helpers import model_inputs, prediction_record

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def log_labelled(cfg, n, *, labelled_after=timedelta(minutes=5)):
    """n served rows, one a minute, each with its true outcome reported `labelled_after` later."""
    frame = model_inputs(cfg, n, seed=7)
    label = cfg.dataset.label
    preds, outcomes = [], []
    for i, row in enumerate(frame.to_dict("records")):
        at = START + timedelta(minutes=i)
        outcome = int(row.pop(label))
        preds.append(prediction_record(f"r{i}", features=row, at=at))
        outcomes.append({"request_id": f"r{i}", "label": outcome, "logged_at": at + labelled_after})
    write_records(traffic_log(cfg.storage), PREDICTIONS, preds)
    write_records(traffic_log(cfg.storage), FEEDBACK, outcomes)
    return frame


def test_production_with_no_labelled_row_is_refused_in_one_line(tmp_path):
    cfg = make_config(tmp_path, retrain={"data": "production"})
    with pytest.raises(TrainingDataError) as refused:
        training_data(cfg, cutoff=START)
    message = str(refused.value)
    assert "retrain.data is production" in message and "\n" not in message


def test_production_rows_train_as_they_were_served(tmp_path):
    cfg = make_config(tmp_path, retrain={"data": "production"}, model={"min_rows": 20})
    served = log_labelled(cfg, 300)
    cutoff = START + timedelta(minutes=250)  # rows 0..245 were labelled at or before it
    data = training_data(cfg, cutoff=cutoff)
    splits = data.splits
    rows = len(splits.train) + len(splits.valid) + len(splits.holdout)
    assert rows == 246 and data.note is None
    assert splits.lineage["training_data"] == "production"
    assert splits.lineage["production_rows"] == "246"
    assert splits.lineage["production_table"] == data.table.build
    names = feature_spec(cfg).names
    seen = splits.train.sort_values(cfg.dataset.timestamp).reset_index(drop=True)
    expected = served.iloc[: len(seen)].reset_index(drop=True)
    assert seen[names[:3]].equals(expected[names[:3]].astype("float64"))  # the logged inputs, unchanged
    assert seen[cfg.dataset.label].tolist() == expected[cfg.dataset.label].astype(int).tolist()


def test_production_frame_keys_the_served_time_and_outcome(tmp_path):
    cfg = make_config(tmp_path)
    log_labelled(cfg, 5)
    production.build_table(cfg, cutoff=START + timedelta(hours=1))
    frame = production_frame(production.read_table(cfg), cfg)
    ds = cfg.dataset
    assert list(frame.columns[:3]) == [ds.entity, ds.timestamp, ds.label]
    assert frame[ds.timestamp].min() == START and len(frame) == 5
