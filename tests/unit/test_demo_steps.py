"""The demo's clean slate: an earlier run's state is archived, and the next run starts fresh."""

from __future__ import annotations

from app.demo_steps import archive_earlier_run
from app.monitoring import production
from app.monitoring.traffic import PREDICTIONS, log_files, traffic_log, write_records
from tests.configs import make_config
from tests.doubles import traffic_record


def test_archiving_moves_the_production_table_out_of_the_catalog_and_the_next_build_starts_fresh(tmp_path):
    cfg = make_config(tmp_path)
    first = production.build_table(cfg)
    assert production.current(cfg) == first
    write_records(traffic_log(cfg.storage), PREDICTIONS, [traffic_record("r1").row()])
    archive_earlier_run(cfg)
    (archived,) = cfg.storage.archive.iterdir()
    assert log_files(archived / "traffic", PREDICTIONS) and not log_files(
        traffic_log(cfg.storage), PREDICTIONS
    )
    assert list((archived / "production" / "metadata").glob("*.metadata.json")), "its files are kept"
    assert production.current(cfg) is None and not cfg.storage.production.exists()
    second = production.build_table(cfg)  # a new table where the old one was
    assert production.current(cfg) == second and second.build != first.build
