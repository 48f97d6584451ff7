"""The CLI as a user runs it: separate processes, a local Ray each, exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import LOCAL_CONFIG, ROOT

pytestmark = pytest.mark.e2e


def mlsys(tmp_path, *args, check=True):
    env = {
        **os.environ,
        "MLSYS_STORAGE__ROOT": str(tmp_path / "store"),
        "MLSYS_RAY__NUM_CPUS": "4",
        "MLSYS_RAY__INCLUDE_DASHBOARD": "false",
        "MLSYS_TRAIN__EPOCHS": "3",
        "RAY_ADDRESS": "",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(LOCAL_CONFIG), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_generate_etl_features_from_the_cli(tmp_path):
    raw = tmp_path / "raw"
    out = mlsys(tmp_path, "data", "generate", "--rows", "4000", "--out", str(raw), "--format", "csv")
    assert "wrote 4,000 rows" in out.stdout
    out = mlsys(tmp_path, "etl", "--input", str(raw))
    assert "rows read" in out.stdout and "4,000" in out.stdout
    out = mlsys(tmp_path, "features", "apply")
    assert "feature service 'model_v1'" in out.stdout
    out = mlsys(tmp_path, "features", "materialize")
    assert "materialized" in out.stdout
    out = mlsys(tmp_path, "features", "materialize")
    assert "up to date" in out.stdout


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    proc = mlsys(tmp_path, "etl", "--input", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: input {tmp_path / 'nope'} does not exist"

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        LOCAL_CONFIG.read_text().replace("numeric: [age, income, score]", "numeric: [age, income-usd]")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(bad), "etl"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: dataset.numeric.1: 'income-usd' cannot be a feature name")


def test_features_before_etl_is_a_clear_error(tmp_path):
    proc = mlsys(tmp_path, "features", "apply", check=False)
    assert proc.returncode == 2
    assert "run `mlsys etl` first" in proc.stderr


def test_pipeline_registers_a_champion_visible_in_models_list(tmp_path):
    raw = tmp_path / "raw"
    mlsys(tmp_path, "data", "generate", "--rows", "12000", "--out", str(raw))
    out = mlsys(tmp_path, "pipeline", "--input", str(raw))
    assert "registered version 1 as champion" in out.stdout
    listing = mlsys(tmp_path, "models", "list").stdout
    assert "champion" in listing
    proc = mlsys(tmp_path, "models", "promote", "7", check=False)
    assert proc.returncode == 2 and "has no version 7" in proc.stderr
    proc = mlsys(tmp_path, "models", "rollback", check=False)
    assert proc.returncode == 2 and "no earlier champion" in proc.stderr
