"""Benchmark: `POST /predict` by entity id against a no-op Serve deployment, per proxy mode.

    python benchmarks/serving.py --seconds 8

For each proxy mode (Ray's default Python proxy, and HAProxy with the throughput-optimised
settings) a fresh local cluster serves two applications behind the same proxy: the mlsys app
(online features from Feast + stable-hash A/B routing + the torch model + traffic logging to
the monitor) and a no-op FastAPI deployment (parses the JSON body, answers a small JSON).
Two load generators, each in its own process, measure:
1. closed loop at 1, 8 and 32 connections, for both apps: req/s, P50 and P99 latency, with
   `wrk` (C, one thread; a Lua script rotates the entity ids) and with an asyncio client;
2. open loop (asyncio) at 50, 65 and 80 % of the mlsys app's peak req/s: P99 (the alert
   threshold is 100 ms);
3. `POST /predict` with 1,000 instances: rows/s.
Writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PORT = 8011
CONNECTIONS = (1, 8, 32)
WRK_SCRIPT = ROOT / "benchmarks" / "wrk_post.lua"
SHARES = (50, 65, 80)  # open-loop rates, % of the closed-loop peak


def env(work: Path) -> dict:
    return {
        **os.environ,
        "MLSYS_STORAGE__ROOT": str(work / "store"),
        "MLSYS_DATASET__SOURCE": str(work / "raw"),
        "MLSYS_RAY__INCLUDE_DASHBOARD": "false",
        "MLSYS_SERVE__HTTP_PORT": str(PORT),
        "MLSYS_SERVE__EXPERIMENT__NAME": "bench",
        "MLSYS_MLP__EPOCHS": "2",
        "RAY_ADDRESS": "",
    }


def prepare(work: Path, rows: int) -> None:
    """Data, features and a champion, through the CLI (skipped when the store has one)."""
    if (work / "store" / "mlflow.db").exists():
        return
    run = [sys.executable, "-m", "app"]
    subprocess.run(
        [*run, "data", "generate", "--rows", str(rows), "--out", str(work / "raw")],
        env=env(work),
        cwd=ROOT,
        check=True,
    )
    subprocess.run([*run, "pipeline"], env=env(work), cwd=ROOT, check=True)


def serve_forever(mode: str) -> None:
    """Server process: a fresh local cluster in `mode`, the mlsys app and a no-op app."""
    from ray import serve

    from app.cluster.connection import connect
    from app.config import load_config
    from app.serving import app as serving_app

    cfg = load_config()
    connect(cfg.ray.model_copy(update={"serve_proxy": mode}))
    serving_app.start(cfg)
    serve.run(noop_deployment().bind(), name="noop", route_prefix="/noop")
    print("READY", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    serve.shutdown()


def noop_deployment():
    """The baseline: the same proxy and framework (a FastAPI ingress), no work."""
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()

    @api.post("/")
    async def noop(body: dict) -> dict:
        return {"ok": True}

    @serve.deployment(name="noop", max_ongoing_requests=256)
    @serve.ingress(api)
    class Noop:
        pass

    return Noop


def wrk(url: str, bodies: list[bytes], connections: int, seconds: float) -> dict | None:
    """Closed loop with wrk (None when wrk is not installed)."""
    if shutil.which("wrk") is None:
        return None
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(WRK_SCRIPT), url, "--"]
    out = subprocess.run([*cmd, *(b.decode() for b in bodies)], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return {**r, "errors": r["non_2xx"] + r["socket_errors"]}


async def closed_loop(url: str, body: bytes, connections: int, seconds: float) -> dict:
    import aiohttp

    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds

    async def worker(session):
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:
        for _ in range(20):  # warm-up
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    return summary(latencies, errors, elapsed)


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Requests sent on a fixed schedule (not waiting for answers), as real traffic arrives."""
    import aiohttp

    latencies, errors, statuses = [], 0, {}

    async def one(session, body):
        nonlocal errors
        t0 = time.perf_counter()
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            await r.read()
            errors += r.status != 200
            statuses[r.status] = statuses.get(r.status, 0) + 1
        latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        tasks, start, n = [], time.perf_counter(), int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {**summary(latencies, errors, elapsed), "statuses": statuses}


def summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "errors": errors,
        "rps": len(ms) / elapsed,
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
    }


async def expect_ok(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(url, json={}, allow_redirects=False) as r:
        if r.status != 200:
            raise RuntimeError(f"{url} answered {r.status}, not 200")


async def known_entities(base: str, candidates: list[int]) -> list[int]:
    """Entity ids the online store has (an unknown id is a correct 404, not load)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        found = []
        for e in candidates:
            async with session.post(f"{base}/predict", json={"entity_id": e}) as r:
                await r.read()
                if r.status == 200:
                    found.append(e)
    return found


async def measure(seconds: float, entities: list[int]) -> dict:
    base = f"http://127.0.0.1:{PORT}"
    entities = await known_entities(base, entities)
    bodies = [json.dumps({"entity_id": e}).encode() for e in entities]
    # The trailing slash is the no-op route's own path: without it Serve answers a 307
    # redirect, which wrk would count as a (much cheaper) answer.
    noop = f"{base}/noop/"
    await expect_ok(noop)
    out = {"predict": {}, "noop": {}, "wrk_predict": {}, "wrk_noop": {}}
    # Warm-up under load: the first seconds after a deploy pay one-off costs (first Feast
    # reads, the monitor's first flushes) that are not the steady state being measured.
    wrk(f"{base}/predict", bodies, 32, 10) or await closed_loop(f"{base}/predict", bodies[0], 32, 10)
    for c in CONNECTIONS:
        out["predict"][c] = await closed_loop(f"{base}/predict", random.choice(bodies), c, seconds)
        out["noop"][c] = await closed_loop(noop, b"{}", c, seconds)
        out["wrk_predict"][c] = wrk(f"{base}/predict", bodies, c, seconds)
        out["wrk_noop"][c] = wrk(noop, [b"{}"], c, seconds)
    peak = max(r["rps"] for r in out["predict"].values())
    for share in SHARES:  # where does P99 stay under the 100 ms alert threshold?
        rate = share / 100 * peak
        out[f"open_loop_{share}pct"] = {
            "rate": rate,
            **await open_loop(f"{base}/predict", bodies, rate, seconds),
        }
    instances = json.dumps({"instances": [{"entity_id": entities[i % len(entities)]} for i in range(1000)]})
    batch = await closed_loop(f"{base}/predict", instances.encode(), 1, seconds)
    out["batch_1000"] = {**batch, "rows_per_s": batch["rps"] * 1000}
    return out


def run_mode(mode: str, work: Path, seconds: float) -> dict:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode],
        env=env(work),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for line in server.stdout:
            if line.startswith("READY"):
                break
        else:
            raise RuntimeError(f"the {mode} server did not start")
        return asyncio.run(measure(seconds, list(range(1, 400))))
    finally:
        server.stdin.close()
        server.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--modes", default="default,haproxy")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "serving")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever(args.serve)
        return
    prepare(args.work, args.rows)
    results = {mode: run_mode(mode, args.work, args.seconds) for mode in args.modes.split(",")}
    print(
        f"{'proxy':8} {'client':7} {'conns':>5} | {'predict req/s':>13} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'noop req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | predict/noop"
    )
    for mode, r in results.items():
        for client, (pk, nk) in {"asyncio": ("predict", "noop"), "wrk": ("wrk_predict", "wrk_noop")}.items():
            for c in CONNECTIONS:
                p, n = r[pk][c], r[nk][c]
                if p is None or n is None:
                    print(f"{mode:8} {client}: not installed")
                    break
                errors = f"  errors {p['errors']} / {n['errors']}" if p["errors"] + n["errors"] else ""
                print(
                    f"{mode:8} {client:7} {c:5d} | {p['rps']:13.0f} {p['p50_ms']:7.1f} {p['p99_ms']:7.1f} | "
                    f"{n['rps']:10.0f} {n['p50_ms']:7.1f} {n['p99_ms']:7.1f} | {p['rps'] / n['rps']:.2f}{errors}"
                )
        for client, (pk, nk) in {"asyncio": ("predict", "noop"), "wrk": ("wrk_predict", "wrk_noop")}.items():
            if r[pk][CONNECTIONS[-1]] is None:
                continue
            peak_p = max(x["rps"] for x in r[pk].values())
            peak_n = max(x["rps"] for x in r[nk].values())
            print(f"{mode:8} {client:7} peak predict/noop {peak_p / peak_n:.2f}")
        print(f"{mode:8} batch of 1,000: {r['batch_1000']['rows_per_s']:.0f} rows/s")
        for share in SHARES:
            ol = r[f"open_loop_{share}pct"]
            print(
                f"{mode:8} open loop at {share} % of peak ({ol['rate']:.0f} req/s): p50 {ol['p50_ms']:.1f} ms, "
                f"p99 {ol['p99_ms']:.1f} ms, errors {ol['errors']}"
            )
    out = ROOT / "benchmarks" / "results" / "serving.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
