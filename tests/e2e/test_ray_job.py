"""`ray start --head` then `ray job submit --working-dir . -- mlsys pipeline`, as the README says.

The head is this test's own (its own ports and temp dir); at the end only its processes are
stopped, so a cluster or service running beside the tests is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import LOCAL_CONFIG, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BIN = Path(sys.executable).parent
DASHBOARD = "http://127.0.0.1:8267"


def stop_cluster(temp_dir: str) -> None:
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp_dir in part for part in proc.info["cmdline"] or []):
            proc.kill()


def test_ray_job_submit_runs_the_pipeline_on_a_started_head(tmp_path):
    temp_dir = f"/tmp/mlsys-rt-{os.getpid()}"  # short: Ray's unix sockets live under it
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_ADDRESS": "",
        "MLSYS_STORAGE__ROOT": str(tmp_path / "store"),
        "MLSYS_DATASET__SOURCE": str(tmp_path / "raw"),
        "MLSYS_TRAIN__EPOCHS": "2",
    }
    env.pop("RAY_AUTH_MODE", None)
    subprocess.run(
        [
            BIN / "mlsys",
            "--config",
            LOCAL_CONFIG,
            "data",
            "generate",
            "--rows",
            "8000",
            "--out",
            tmp_path / "raw",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    started = subprocess.run(
        [
            BIN / "ray",
            "start",
            "--head",
            "--port=6390",
            "--num-cpus=4",
            "--dashboard-port=8267",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        submit = [
            BIN / "ray",
            "job",
            "submit",
            "--address",
            DASHBOARD,
            "--working-dir",
            ".",
            "--",
            "mlsys",
            "--config",
            "deployments/config/local.yaml",
            "pipeline",
        ]
        # Without the token mode the Jobs API refuses (the README says to set it).
        refused = subprocess.run(submit, env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert refused.returncode != 0 and "auth" in (refused.stdout + refused.stderr).lower()
        done = subprocess.run(
            submit,
            env={**env, "RAY_AUTH_MODE": "token"},
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=900,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        assert "registered version 1 as champion" in out and "succeeded" in out.lower()
    finally:
        stop_cluster(temp_dir)
        time.sleep(1)
