"""Commands beside a running cluster on the same machine, as separate processes.

A `ray start --head` with token authentication (as the README starts one, here in a fresh home
folder and a Ray temporary folder of its own, every port free) is joined by `mlsys etl`; a
local cluster started while another process holds the dashboard port still starts; a cluster
that refuses a command ends it with one error line. Only this test's Ray processes are stopped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import pytest

from tests.configs import LOCAL_CONFIG, ROOT
from tests.helpers import free_port, small_cli_env

pytestmark = pytest.mark.e2e
REFUSED = "Authentication token is missing or incorrect"


@pytest.fixture
def head(tmp_path):
    """A token-authenticated `ray start` head; yields the environment that sees it."""
    temp_dir = f"/tmp/mlsys-bs-{os.getpid()}"  # short: Ray's unix sockets live under it
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLSYS_"))}
    env.update(HOME=str(home), RAY_TMPDIR=temp_dir, PATH=f"{ROOT / '.venv' / 'bin'}:{env['PATH']}")
    run(["ray", "get-auth-token", "--generate"], env)
    port = free_port()
    ports = {
        "--port": port,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    start = ["ray", "start", "--head", "--num-cpus=2", "--disable-usage-stats", "--include-dashboard=false"]
    # The raylet gives its dashboard agent 15 s to start by default: not always enough on two
    # cores shared with other clusters.
    slow = {"RAY_AUTH_MODE": "token", "RAY_agent_register_timeout_ms": "120000"}
    try:
        run([*start, *(f"{flag}={value}" for flag, value in ports.items())], {**env, **slow})
        yield {"env": env, "address": f"127.0.0.1:{port}", "tmp": tmp_path}
    finally:
        for proc in psutil.process_iter(["cmdline"]):
            if any(temp_dir in part for part in proc.info["cmdline"] or []):
                proc.kill()


def run(cmd: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-3000:])
    return done


def mlsys(env: dict, tmp_path, *args) -> subprocess.CompletedProcess:
    cli = {**small_cli_env(), **env, "MLSYS_STORAGE__ROOT": str(tmp_path / "store")}
    return subprocess.run(
        [sys.executable, "-m", "app", "--config", str(LOCAL_CONFIG), *args],
        env=cli,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def raw_file(env: dict, tmp_path) -> str:
    path = tmp_path / "raw.csv"
    run([sys.executable, "-m", "app", "data", "generate", "--rows", "500", "--out", str(path)], env)
    return str(path)


def test_a_command_joins_the_token_authenticated_head_ray_start_left(head):
    env, tmp = head["env"], head["tmp"]
    done = mlsys(env, tmp, "etl", "--input", raw_file(env, tmp))
    out = done.stdout + done.stderr
    assert done.returncode == 0 and REFUSED not in out, out[-3000:]
    assert "Traceback" not in out


def test_a_cluster_that_refuses_the_command_is_one_error_line(head):
    """An address given without RAY_AUTH_MODE=token: Ray sends no token and the head refuses."""
    env = {**head["env"], "RAY_TMPDIR": str(head["tmp"] / "other"), "RAY_ADDRESS": head["address"]}
    done = mlsys(env, head["tmp"], "etl", "--input", raw_file(head["env"], head["tmp"]))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"error: cannot join the Ray cluster at {head['address']}" in done.stderr
    assert "RAY_AUTH_MODE=token" in done.stderr  # what to do about it


def test_a_second_local_cluster_starts_while_another_holds_the_dashboard_port(tmp_path):
    env = {**small_cli_env(), "RAY_TMPDIR": f"/tmp/mlsys-dp-{os.getpid()}"}  # no `ray start` record
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        env.update(MLSYS_RAY__INCLUDE_DASHBOARD="true", MLSYS_RAY__DASHBOARD_PORT=str(held.getsockname()[1]))
        done = mlsys(env, tmp_path, "etl", "--input", raw_file(env, tmp_path))
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in out, out[-3000:]
