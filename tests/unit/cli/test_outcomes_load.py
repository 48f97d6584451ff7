"""`mlsys outcomes load` as a user runs it: one summary line (loaded = joined + quarantined), a
second load adding nothing, and every mistake (a producer that is not current, a missing or
malformed file, missing columns, no running service) one `error:` line with exit code 2."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from app.cli import main
from app.monitoring import outcome_load
from app.monitoring.traffic import PREDICTIONS, traffic_log, write_records
from app.serving.producers import producer_store
from tests.configs import config_dict, make_config
from tests.doubles import traffic_record
from tests.unit.monitoring.test_outcome_load import LocalMonitor


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A config file, a producer `billing`, three served predictions, and the monitor (no Ray)."""
    data = config_dict()
    data["storage"] = {"root": str(tmp_path / "store")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    cfg = make_config(tmp_path)
    producer_store(cfg).add("billing")
    at = datetime.now(timezone.utc) - timedelta(hours=1)
    rows = [traffic_record(f"r{i}", at=at, experiment="exp-1").row() for i in range(3)]
    write_records(traffic_log(cfg.storage), PREDICTIONS, rows)
    monitors = []
    monkeypatch.setattr(
        outcome_load, "running_monitor", lambda cfg: monitors.append(LocalMonitor(cfg)) or monitors[-1]
    )
    return config, cfg, monitors


def mlsys(capsys, *args) -> tuple[int, str, str]:
    """Run the command line as the console script does: exit code, stdout, stderr."""
    argv = sys.argv
    sys.argv = ["mlsys", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_load_prints_one_summary_line_and_a_second_load_adds_nothing(setup, capsys, tmp_path):
    config, cfg, monitors = setup
    source = tmp_path / "outcomes.csv"
    source.write_text("request_id,label\nr0,1\nr1,0\nnope,1\n")
    code, out, err = mlsys(capsys, "--config", config, "outcomes", "load", source, "--producer", "billing")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert (
        lines[0]
        == "loaded 3 outcomes of billing from 1 file: 2 joined, 1 quarantined (unknown request_id: 1)"
    )
    assert (
        lines[1].startswith("quarantined rows, with their reasons: ")
        and str(cfg.storage.path(cfg.storage.quarantine)) in lines[1]
    )
    assert monitors[0].champion().outcomes_by_producer == {"billing": 2}

    code, out, _ = mlsys(capsys, "--config", config, "outcomes", "load", source, "--producer", "billing")
    assert code == 0
    summary = out.strip().splitlines()[0]
    assert summary.startswith("loaded 3 outcomes of billing from 1 file: 0 joined, 3 quarantined (")
    assert "already labelled: 2" in summary and "unknown request_id: 1" in summary


def test_outcomes_come_only_from_a_current_producer(setup, capsys, tmp_path):
    config, cfg, monitors = setup
    source = tmp_path / "outcomes.csv"
    source.write_text("request_id,label\nr0,1\n")
    code, _, err = mlsys(capsys, "--config", config, "outcomes", "load", source, "--producer", "nobody")
    assert "no current producer 'nobody'" in one_error_line(code, err)
    producer_store(cfg).revoke("billing")
    code, _, err = mlsys(capsys, "--config", config, "outcomes", "load", source, "--producer", "billing")
    assert "no current producer 'billing'" in one_error_line(code, err)
    assert monitors == []  # nothing reached the monitor


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("missing.csv", None, "does not exist"),
        ("bad.parquet", "PAR1 not really", "not a readable parquet file"),
        ("bad.csv", 'request_id,label\n"r0,1\n', "not a readable csv file"),
        ("columns.csv", "id,outcome\nr0,1\n", "missing column(s) label, request_id"),
    ],
)
def test_a_file_that_cannot_be_loaded_is_one_line_and_exit_code_2(
    setup, capsys, tmp_path, name, content, says
):
    config, _, monitors = setup
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, _, err = mlsys(capsys, "--config", config, "outcomes", "load", path, "--producer", "billing")
    assert says in one_error_line(code, err)
    assert monitors == []  # refused before the cluster is joined


def test_no_running_service_is_one_line(setup, capsys, tmp_path, monkeypatch):
    import ray

    from app.cluster import connection

    config, _, _ = setup
    monkeypatch.undo()  # the real running_monitor
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def no_cluster(_):
        raise connection.ClusterUnavailable("Could not find any running Ray instance.")

    monkeypatch.setattr(connection, "join_running", no_cluster)
    source = tmp_path / "outcomes.csv"
    source.write_text("request_id,label\nr0,1\n")
    code, _, err = mlsys(capsys, "--config", config, "outcomes", "load", source, "--producer", "billing")
    line = one_error_line(code, err)
    assert "no running cluster" in line and "mlsys serve" in line


def test_an_unreachable_state_store_is_one_line_and_exit_code_2(tmp_path, capsys):
    from tests.helpers import free_port

    data = config_dict()
    endpoint = f"http://127.0.0.1:{free_port()}"
    data["storage"] = {
        "root": str(tmp_path / "store"),
        "state": "s3://state/x",
        "catalog": {"s3.endpoint": endpoint},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    code, _, err = mlsys(capsys, "--config", config, "outcomes", "producer", "add", "billing")
    assert "the state store s3://state/x is not usable" in one_error_line(code, err)


def test_producer_commands_add_rotate_list_and_revoke(tmp_path, capsys):
    data = config_dict()
    data["storage"] = {"root": str(tmp_path / "store")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    code, out, _ = mlsys(capsys, "--config", config, "outcomes", "producer", "add", "billing")
    token, where = out.strip().splitlines()
    assert code == 0 and token.startswith("mlsys-out-") and where.endswith("serving/producers.json)")
    code, out, _ = mlsys(capsys, "--config", config, "outcomes", "producer", "rotate", "billing")
    assert code == 0 and out.splitlines()[0] != token
    code, out, _ = mlsys(capsys, "--config", config, "outcomes", "producer", "list")
    assert out.strip() == "billing: 2 current token(s)"
    code, out, _ = mlsys(capsys, "--config", config, "outcomes", "producer", "revoke", "billing")
    assert code == 0 and producer_store(make_config(tmp_path)).producers() == {}
    code, _, err = mlsys(capsys, "--config", config, "outcomes", "producer", "revoke", "billing")
    assert "no producer 'billing'" in one_error_line(code, err)
