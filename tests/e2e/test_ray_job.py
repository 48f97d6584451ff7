"""The README's cluster block, run exactly as written: `ray start`, data, `ray job submit`.

It runs in a fresh home folder (where `~/mlsys-data` and the job's `~/.mlsys` land) with Ray's
temporary folder of its own, so that at the end only this cluster's processes are stopped.
The block uses Ray's default ports: a cluster already running beside the tests would take
them, so outside CI the test is skipped then.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import psutil
import pytest

from tests.configs import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def readme_cluster_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running on a Ray cluster") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_cluster(temp_dir: str) -> None:
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp_dir in part for part in proc.info["cmdline"] or []):
            proc.kill()


def test_the_readmes_cluster_block_runs_the_pipeline_as_a_ray_job(tmp_path):
    if (busy(8265) or busy(6379)) and not os.environ.get("CI"):
        pytest.skip("a Ray cluster already holds the default ports")
    temp_dir = f"/tmp/mlsys-rj-{os.getpid()}"  # short: Ray's unix sockets live under it
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLSYS_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), RAY_TMPDIR=temp_dir, MLSYS_MLP__EPOCHS="2")
    block = readme_cluster_block()
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        assert "registered version 1 as champion" in out and "succeeded" in out.lower()
        assert (home / ".mlsys" / "warehouse").is_dir(), "the job's storage is under the home folder"
        refused = subprocess.run(
            ["bash", "-c", "source .venv/bin/activate && ray job list --address http://127.0.0.1:8265"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode != 0 and "auth" in (refused.stdout + refused.stderr).lower()
    finally:
        stop_cluster(temp_dir)
        time.sleep(1)
