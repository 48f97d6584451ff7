"""Benchmark: how long Serve autoscaling takes to add and remove an ingress replica under load,
and how many requests fail meanwhile.

    python benchmarks/autoscaling.py --callers 12

Setup as the serving tests do it (tests/helpers.py): generated data through ETL into a fresh
storage, features materialized, champion and challenger quick bundles registered; a local
cluster with HAProxy (the default proxy). Two applications on the same proxy, one after the
other, get the same closed-loop load (`--callers` threads predicting by entity id, no retries):
- baseline: the ingress fixed at one replica (no scaling event);
- autoscaling: one to two replicas, `target_ongoing_requests` 2, upscale delay 1 s, downscale
  delay 3 s, look-back 12 s.
For each it prints requests answered and failed, and for the autoscaling one the seconds from
the start of the load to a second RUNNING replica and from the end of the load back to one.
Serve's replicas push their load every 10 s (RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S),
which bounds how fast any setting can react.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FAST = {"upscale_delay_s": 1, "downscale_delay_s": 3, "look_back_period_s": 12, "target_ongoing_requests": 2}


def running(app: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    states = status.deployments["ingress"].replica_states if status else {}
    return sum(n for s, n in states.items() if str(getattr(s, "value", s)) == "RUNNING")


def seconds_until(check, timeout_s: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            return float("nan")
        time.sleep(0.25)
    return time.monotonic() - start


def serve_app(tmp: Path, port: int, name: str, ingress: dict) -> str:
    from app.serving import app as serving_app
    from tests.configs import make_config

    cfg = make_config(
        tmp,
        serve={
            "http_port": port,
            "admin_auth": False,
            "ingress": ingress,
            "experiment": {"name": f"bench-{name}", "split": {"champion": 1.0, "challenger": 0.0}},
        },
    )
    return serving_app.start(cfg, name=name, route_prefix=f"/{name}", timeout_s=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=12)
    parser.add_argument("--baseline-seconds", type=float, default=30)
    args = parser.parse_args()
    import os

    import ray
    from ray import serve

    from app.cluster.connection import SERVE_PROXY_ENV, WORKER_ENV
    from app.registry.registry import CHALLENGER, CHAMPION, Registry
    from tests.configs import make_config
    from tests.helpers import PredictLoad as Load
    from tests.helpers import free_port, quick_bundle, served_entities

    os.environ.update(SERVE_PROXY_ENV["haproxy"])
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {**WORKER_ENV, **SERVE_PROXY_ENV["haproxy"]}})  # fmt: skip
    tmp, port = Path(tempfile.mkdtemp(prefix="mlsys-bench-autoscaling-")), free_port()
    cfg = make_config(tmp)
    entities, clean = served_entities(cfg, tmp)
    registry = Registry(cfg)
    registry.register(quick_bundle(cfg, clean, seed=1), params={}, alias=CHAMPION)
    registry.register(quick_bundle(cfg, clean, seed=2), params={}, alias=CHALLENGER)
    rows = []
    try:
        url = serve_app(tmp, port, "fixed", {"min_replicas": 1, "max_replicas": 1})
        with Load(url, entities, args.callers) as fixed:
            time.sleep(args.baseline_seconds)
        serve.delete("fixed")
        rows.append(("baseline: 1 replica, fixed", fixed.counts, float("nan"), float("nan")))
        url = serve_app(tmp, port, "scaling", {"min_replicas": 1, "max_replicas": 2, **FAST})
        with Load(url, entities, args.callers) as busy:
            up = seconds_until(lambda: running("scaling") == 2, 300)
        down = seconds_until(lambda: running("scaling") == 1, 300)
        rows.append(("autoscaling: 1 to 2 replicas", busy.counts, up, down))
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"\n{args.callers} callers, closed loop, POST /predict by entity id (HAProxy)")
    print(f"{'application':<32}{'answered':>10}{'failed':>8}{'to 2nd replica s':>18}{'back to 1 s':>13}")
    for name, counts, up_s, down_s in rows:
        print(f"{name:<32}{counts['ok']:>10}{counts['failed']:>8}{up_s:>18.1f}{down_s:>13.1f}")


if __name__ == "__main__":
    main()
