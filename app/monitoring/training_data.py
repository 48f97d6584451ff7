"""What a training run learns from (`retrain.data`): the warehouse, production, or both.

`warehouse`: the labelled rows ETL loaded, joined point-in-time to Feast's features.
`production`: the production table (production.py) built for this run's cutoff, now: served
rows with the outcomes reported for them before it. `both`: the two, each split by its own
time (`split_sources`), so the retrain learns the shift the service's traffic shows while the
warehouse keeps the model anchored; with no labelled production row yet it trains on the
warehouse and says so in one line. `production` without one is refused.

The sources meet after the point-in-time join, as model-input rows: a warehouse row gets its
features from Feast as of its event time; a production row already holds the features the
model was given when it was served, derived by the same `add_features`. Joining production
rows through Feast again would give the entity's features as of the last materialization,
not what the model saw, and a request scored on raw features has no entity in the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from app.config import AppConfig
from app.features.transforms import feature_spec
from app.monitoring.production import SERVED_AT, ProductionTable, build_table, read_table
from app.training.dataset import (
    Splits,
    TrainingDataError,
    build_splits,
    check_splits,
    load_frame,
    split_sources,
)

log = logging.getLogger(__name__)
WAREHOUSE, PRODUCTION, BOTH = "warehouse", "production", "both"


@dataclass(frozen=True)
class TrainingData:
    splits: Splits  # their `lineage` says which sources they hold
    note: str | None = None  # a fallback, said to the user in one line
    table: ProductionTable | None = None  # the production table built for this run


def production_frame(rows: pd.DataFrame, cfg: AppConfig) -> pd.DataFrame:
    """Production table rows as training rows: the assignment key as the entity, the time the
    row was served as its timestamp, the outcome as its label, then the model's features."""
    ds, names = cfg.dataset, feature_spec(cfg).names
    if rows.empty:
        return pd.DataFrame(columns=[ds.entity, ds.timestamp, ds.label, *names])
    frame = pd.DataFrame(
        {ds.entity: rows["key"].astype(str), ds.timestamp: rows[SERVED_AT], ds.label: rows[ds.label]}
    )
    return pd.concat([frame, rows[names]], axis=1)


def training_data(cfg: AppConfig, *, cutoff: datetime | pd.Timestamp | None = None) -> TrainingData:
    """The checked training set `retrain.data` names, for a cutoff (now, if not given)."""
    wanted = cfg.retrain.data
    if wanted == WAREHOUSE:
        return TrainingData(build_splits(cfg))
    table = build_table(cfg, cutoff=cutoff)
    production = production_frame(read_table(cfg, table), cfg)
    if production.empty:
        cut = pd.Timestamp(table.cutoff)
        missing = (
            f"no served row has an outcome reported by {cut:%Y-%m-%d %H:%M:%S} UTC "
            f"(retrain.production_days={cfg.retrain.production_days:g})"
        )
        if wanted == PRODUCTION:
            raise TrainingDataError(
                f"retrain.data is production, but {missing}; report outcomes to /feedback or "
                "set retrain.data to both or warehouse"
            )
        note = f"{missing}: training on the warehouse alone"
        log.info(note)  # said once, by the caller, in one line
        return TrainingData(build_splits(cfg), note=note, table=table)
    frames, warehouse_lineage = {PRODUCTION: production}, {}
    if wanted == BOTH:
        frames[WAREHOUSE], warehouse_lineage = load_frame(cfg)
    splits = split_sources(frames, cfg)
    check_splits(splits, cfg)
    lineage = {
        "training_data": wanted,
        "production_rows": str(len(production)),
        "production_cutoff": table.cutoff,
        "production_table": table.build,
        "production_snapshot": str(table.snapshot_id),  # the table's Iceberg snapshot of those rows
    }
    lineage.update(warehouse_lineage)
    return TrainingData(Splits(splits.train, splits.valid, splits.holdout, lineage=lineage), table=table)
