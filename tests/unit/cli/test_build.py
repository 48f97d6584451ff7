"""`mlsys data production`: builds the production table for a cutoff and says what it holds."""

from __future__ import annotations

from datetime import timedelta

import yaml
from typer.testing import CliRunner

from app.cli import app
from tests.configs import make_config
from tests.unit.monitoring.test_production import CUTOFF, write_traffic


def config_file(cfg, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return str(path)


def test_data_production_builds_the_table_for_the_cutoff(tmp_path):
    cfg = make_config(tmp_path)
    write_traffic(cfg)
    result = CliRunner().invoke(
        app, ["--config", config_file(cfg, tmp_path), "data", "production", "--cutoff", CUTOFF.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "3 labelled rows" in result.output and "2 date(s)" in result.output
    later = (CUTOFF + timedelta(hours=1)).isoformat()
    result = CliRunner().invoke(
        app, ["--config", config_file(cfg, tmp_path), "data", "production", "--cutoff", later]
    )
    assert "4 labelled rows" in result.output


def test_a_cutoff_that_is_not_a_time_is_a_usage_error(tmp_path):
    cfg = make_config(tmp_path)
    result = CliRunner().invoke(
        app, ["--config", config_file(cfg, tmp_path), "data", "production", "--cutoff", "soon"]
    )
    assert result.exit_code == 2 and "is not a time" in result.output
