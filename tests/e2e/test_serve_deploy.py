"""The documented `serve deploy` path for the admin token, with Ray's own CLIs.

A head started with `ray start` (token authentication, as the README's cluster block does it)
on its own ports and temporary folder, in a fresh home folder; a Serve config derived from
deployments/serve_config.yaml whose `args` name a temporary mlsys config and the admin token's
SHA-256 only; `serve deploy` against the dashboard. Then the admin routes take the token (200),
refuse a wrong one (403) and a missing one (401), and the token itself appears nowhere the
cluster shows or keeps: `serve config`, `serve status`, `ray job list`, the environment and
command line of every process of the cluster, its log files. At the end only this cluster's
processes are stopped (those started with its RAY_TMPDIR).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from tests.configs import ROOT, config_dict

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GCS_PORT = 6391
DASHBOARD_PORT = 8275
AGENT_PORT = 52375
CLIENT_PORT = 20012  # outside Ray's default worker ports (10002-19999)
HTTP_PORT = 8142
GRPC_PORT = 9142
BIN = Path(sys.executable).parent  # the venv's `ray` and `serve`
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"
URL = f"http://127.0.0.1:{HTTP_PORT}"


def busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def cli(*args: str, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}"
    return done


def cluster_processes(temp_dir: str) -> list[psutil.Process]:
    """This cluster's processes: they inherited its RAY_TMPDIR (a worker renames its command line)."""
    mine = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        env = proc.info["environ"] or {}
        if env.get("RAY_TMPDIR") == temp_dir or any(temp_dir in p for p in proc.info["cmdline"] or []):
            mine.append(proc)
    return mine


def stop_cluster(temp_dir: str) -> None:
    for proc in cluster_processes(temp_dir):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def serve_config(tmp_path: Path, digest: str) -> Path:
    """deployments/serve_config.yaml with this test's mlsys config, port and token digest."""
    mlsys = config_dict()
    mlsys["storage"] = {"root": str(tmp_path / "store")}
    mlsys["serve"] = {**mlsys.get("serve", {}), "http_port": HTTP_PORT, "grpc_port": GRPC_PORT}
    mlsys["retrain"] = {**mlsys.get("retrain", {}), "schedule": "none", "on_drift": False}
    config = tmp_path / "mlsys.yaml"
    config.write_text(yaml.safe_dump(mlsys))
    deploy = yaml.safe_load((ROOT / "deployments" / "serve_config.yaml").read_text())
    deploy["http_options"]["port"] = HTTP_PORT
    deploy["grpc_options"]["port"] = GRPC_PORT
    (application,) = deploy["applications"]
    application["args"] = {"config": str(config), "admin_token_sha256": digest}
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(deploy))
    return path


def wait_health(timeout_s: float = 240) -> dict:
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{URL}/healthz", timeout=5) as resp:
                return json.load(resp)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(1)
    raise AssertionError(f"{URL}/healthz did not answer in {timeout_s} s ({last})")


def put_experiment(authorization: str | None) -> tuple[int, dict]:
    body = json.dumps({"name": "exp-deploy", "split": {"champion": 0.8, "challenger": 0.2}}).encode()
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(f"{URL}/experiment", data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def files_holding(folder: str, needle: bytes) -> list[str]:
    found = []
    for path in Path(folder).rglob("*"):
        try:
            if path.is_file() and not path.is_socket() and needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


def test_serve_deploy_with_the_token_digest_guards_admin_routes_and_the_token_stays_out(tmp_path):
    ports = (GCS_PORT, DASHBOARD_PORT, AGENT_PORT, CLIENT_PORT, HTTP_PORT, GRPC_PORT)
    if any(busy(p) for p in ports) and not os.environ.get("CI"):
        pytest.skip(f"one of the ports {ports} is taken")
    token = "deploy-" + secrets.token_hex(16)
    digest = hashlib.sha256(token.encode()).hexdigest()
    temp_dir = f"/tmp/mlsys-sd-{os.getpid()}"  # short: Ray's unix sockets live under it
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLSYS_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), RAY_TMPDIR=temp_dir, RAY_AUTH_MODE="token", PATH=f"{BIN}:{env['PATH']}")
    config = serve_config(tmp_path, digest)
    try:
        cli("ray", "get-auth-token", "--generate", env=env)
        cli(
            "ray",
            "start",
            "--head",
            f"--port={GCS_PORT}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={DASHBOARD_PORT}",
            f"--dashboard-agent-listen-port={AGENT_PORT}",
            f"--ray-client-server-port={CLIENT_PORT}",
            "--num-cpus=4",
            "--disable-usage-stats",
            env=env,
        )
        # The operator's shell holds the token; `serve deploy` sends only the config file's digest.
        cli("serve", "deploy", str(config), "--address", DASHBOARD, env={**env, "MLSYS_ADMIN_TOKEN": token})
        health = wait_health()
        assert health["status"] in ("ok", "no model"), health  # no champion needed for admin routes

        status, body = put_experiment(f"Bearer {token}")
        assert status == 200, body
        assert body["experiment"]["name"] == "exp-deploy"
        assert body["experiment"]["split"] == {"champion": 0.8, "challenger": 0.2}
        status, body = put_experiment("Bearer not-the-token")
        assert status == 403, body
        status, body = put_experiment(None)
        assert status == 401, body

        shown = cli("serve", "config", "--address", DASHBOARD, env=env).stdout
        assert digest in shown and token not in shown, shown  # the deployed config: the digest only
        shown = cli("serve", "status", "--address", DASHBOARD, env=env).stdout
        assert "RUNNING" in shown and token not in shown, shown
        shown = cli("ray", "job", "list", "--address", DASHBOARD, env=env).stdout
        assert token not in shown, shown
        processes = cluster_processes(temp_dir)
        titles = [" ".join(p.cmdline()) for p in processes if p.is_running()]
        assert any("ServeReplica" in t for t in titles), titles  # the replicas are among those checked
        leaks = []
        for proc in processes:
            try:
                seen = " ".join(proc.cmdline()) + json.dumps(proc.environ())
            except psutil.Error:
                continue
            if token in seen:
                leaks.append(proc.name())
        assert not leaks, f"the token is in the environment or command line of {leaks}"
        assert not files_holding(temp_dir, token.encode()), "the token is in the cluster's files"
    finally:
        stop_cluster(temp_dir)
        time.sleep(1)
