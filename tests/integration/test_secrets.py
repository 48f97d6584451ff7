"""The admin token never reaches a Ray process: workers, and so every Ray Job, see none of it.

Runs in its own process (the test session's cluster was started before any token was set):
a local cluster started with MLSYS_ADMIN_TOKEN in the environment, a task reading its own
environment, and the app built in the same process still holding the token's digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.configs import LOCAL_CONFIG

pytestmark = pytest.mark.integration

PROBE = """
import json, os, ray
from app.cluster.connection import connect
from app.config import load_config
from app.serving import app as serving_app

cfg = load_config({config!r})
connect(cfg.ray)

@ray.remote
def seen():
    return os.environ.get("MLSYS_ADMIN_TOKEN")

ingress = serving_app.application(cfg)
print(json.dumps({{
    "worker_sees": ray.get(seen.remote()),
    "driver_env": os.environ.get("MLSYS_ADMIN_TOKEN"),
    "ingress_args": [str(a) for a in ingress._bound_deployment.init_args],
}}))
ray.shutdown()
"""


def test_the_token_stays_out_of_ray_processes_and_reaches_the_ingress_as_a_digest(tmp_path):
    token = "s3cret-admin-token"
    env = {
        **os.environ,
        "MLSYS_ADMIN_TOKEN": token,
        "MLSYS_STORAGE__ROOT": str(tmp_path / "store"),
        "MLSYS_RAY__NUM_CPUS": "2",
        "MLSYS_RAY__INCLUDE_DASHBOARD": "false",
        "RAY_ADDRESS": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(config=str(LOCAL_CONFIG))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["worker_sees"] is None and seen["driver_env"] is None
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert digest in seen["ingress_args"] and token not in json.dumps(seen)
