"""Benchmark: the served path against its floors, open loop, and OIP v2 over gRPC vs HTTP.

    python benchmarks/serving_floor.py --seconds 5

One run, HAProxy proxy mode, with the fixtures of benchmarks/serving.py (same data, same
champion, same Serve app and no-op deployment), plus a bare app in its own process: uvicorn +
FastAPI holding the same champion (`Registry(cfg).load("champion")` →
`Predictor.from_bundle`) and the same entities' rows, read once from the same Feast online
store into an in-memory dict (as a Serve replica's row cache holds them). It answers
`POST /predict` by entity id: the floor this architecture pays the proxy and the actors over.
Each figure is printed beside its same-run baseline:
1. open loop (asyncio, fixed arrival rate) at 50, 70, 80 and 90 % of the mlsys app's closed-loop
   peak: p50/p99 of `/predict`, the no-op and the bare app at the same rate (goal: `/predict`
   p99 < 100 ms up to 80 %);
2. closed loop with wrk at 1 and 32 connections: `/predict`, the no-op and the bare app (goal:
   ≥ 0.7x the no-op at 32 connections with p99 < 50 ms);
3. OIP v2 `ModelInfer` over Serve's gRPC proxy (tritonclient.grpc.aio) vs the same request over
   HTTP (`POST /v2/models/<name>/infer`, JSON), 1 and 100 rows per request, closed loop.
Writes benchmarks/results/serving_floor.json. All load generators share the two cores with
the service: compare same-run ratios, not absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import serving as base  # benchmarks/serving.py: env, prepare, the no-op, the load generators
from pydantic import BaseModel

ROOT = base.ROOT
SHARES = (50, 70, 80, 90)  # open-loop rates, % of the closed-loop peak
CONNECTIONS = (1, 32)
OIP_ROWS = (1, 100)
FEATURES_SOURCE = "in-memory dict of the entities' rows, read once from the Feast online store"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the bare app (its own process) ---------------------------------------------------------


class PredictRequest(BaseModel):
    entity_id: int


def bare_app(entities: list[int]):
    """uvicorn + FastAPI, one process: the champion and the entities' online rows in memory."""
    import numpy as np
    from fastapi import FastAPI, HTTPException

    from app.config import load_config
    from app.features.store import FeatureClient
    from app.model.predictor import Predictor
    from app.registry.registry import Registry

    cfg = load_config()
    registry = Registry(cfg)
    predictor = Predictor.from_bundle(
        registry.load("champion"), version=registry.alias_version("champion") or 0
    )
    client = FeatureClient(cfg)
    spec = client.spec
    numeric = set(spec.numeric)
    rows = {
        e: row
        for e, row in zip(entities, client.online(entities), strict=True)
        if row[spec.names[0]] is not None
    }

    api = FastAPI()

    @api.post("/predict")
    async def predict(req: PredictRequest) -> dict:
        row = rows.get(req.entity_id)
        if row is None:
            raise HTTPException(404, f"entity_id {req.entity_id}: no features")
        cols = {c: np.array([row[c]], dtype=float if c in numeric else object) for c in spec.names}
        score = float(predictor.predict_proba(cols)[0])
        return {"entity_id": req.entity_id, "score": score, "model_version": predictor.version}

    return api, len(rows)


def serve_bare(port: int, entities: list[int]) -> None:
    import uvicorn

    api, n = bare_app(entities)
    print(f"READY {n}", flush=True)
    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(cmd: list[str], environ: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, env=environ, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    for line in proc.stdout:
        if line.startswith("READY"):
            return proc
    raise RuntimeError(f"{cmd} did not start")


# --- OIP v2: gRPC and HTTP ------------------------------------------------------------------


def raw_rows(work: Path, names: list[str], n: int) -> list[dict]:
    """The first `n` complete rows of the raw data set (the model's inputs)."""
    import pandas as pd

    frame = pd.read_parquet(next((work / "raw").glob("*.parquet")), columns=names)
    return frame.dropna().head(n).to_dict("records")


def v2_http_body(meta: dict, rows: list[dict]) -> bytes:
    inputs = [
        {
            "name": s["name"],
            "shape": [len(rows)],
            "datatype": s["datatype"],
            "data": [float(r[s["name"]]) if s["datatype"] == "FP32" else str(r[s["name"]]) for r in rows],
        }
        for s in meta["inputs"]
    ]
    return json.dumps({"inputs": inputs}).encode()


def v2_grpc_inputs(meta: dict, rows: list[dict]):
    import numpy as np
    import tritonclient.grpc as triton

    inputs = []
    for s in meta["inputs"]:
        fp = s["datatype"] == "FP32"
        values = [float(r[s["name"]]) if fp else str(r[s["name"]]) for r in rows]
        tensor = triton.InferInput(s["name"], [len(rows)], s["datatype"])
        tensor.set_data_from_numpy(np.array(values, dtype=np.float32 if fp else np.object_))
        inputs.append(tensor)
    return inputs


async def grpc_closed_loop(target: str, model: str, inputs, callers: int, seconds: float) -> dict:
    import tritonclient.grpc.aio as triton_aio

    from app.serving.app import APP_NAME

    latencies, errors = [], 0
    # Serve's gRPC proxy picks the application by this metadata when it serves several.
    headers = {"application": APP_NAME}
    async with triton_aio.InferenceServerClient(target) as client:
        for _ in range(20):  # warm-up
            await client.infer(model, inputs, headers=headers)
        deadline = time.perf_counter() + seconds

        async def worker():
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    await client.infer(model, inputs, headers=headers)
                except Exception:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(callers)))
        elapsed = time.perf_counter() - t0
    return base.summary(latencies, errors, elapsed)


async def oip(http: str, grpc_target: str, work: Path, callers: int, seconds: float) -> dict:
    import aiohttp

    from app.config import load_config

    model = load_config().registry.model_name
    async with aiohttp.ClientSession() as session, session.get(f"{http}/v2/models/{model}") as r:
        meta = await r.json()
    rows = raw_rows(work, [x["name"] for x in meta["inputs"]], max(OIP_ROWS))
    out = {}
    for n in OIP_ROWS:
        body = v2_http_body(meta, rows[:n])
        out[n] = {
            "http": await base.closed_loop(f"{http}/v2/models/{model}/infer", body, callers, seconds),
            "grpc": await grpc_closed_loop(
                grpc_target, model, v2_grpc_inputs(meta, rows[:n]), callers, seconds
            ),
        }
    return out


# --- the measurements -----------------------------------------------------------------------


async def measure(http: str, bare: str, grpc_target: str, entities: list[int], args) -> dict:
    s = args.seconds
    bodies = [json.dumps({"entity_id": e}).encode() for e in entities]
    urls = {"predict": f"{http}/predict", "noop": f"{http}/noop/", "bare": f"{bare}/predict"}
    await base.expect_ok(urls["noop"])
    for url in (urls["predict"], urls["bare"]):  # warm-up under load (first reads, first flushes)
        base.wrk(url, bodies, 32, 10)
    out = {"features_source": FEATURES_SOURCE, "seconds": s, "closed_wrk": {}, "open_loop": {}}
    for c in CONNECTIONS:
        out["closed_wrk"][c] = {
            k: base.wrk(u, bodies if k != "noop" else [b"{}"], c, s) for k, u in urls.items()
        }
    # The peak the open loop's rates are shares of: the asyncio client (the open loop's own
    # generator) in closed loop at 8 and 32 connections.
    peaks = [await base.closed_loop(urls["predict"], bodies[i], c, s) for i, c in enumerate((8, 32))]
    out["peak_asyncio"] = max(p["rps"] for p in peaks)
    for share in SHARES:
        rate = share / 100 * out["peak_asyncio"]
        out["open_loop"][share] = {"rate": rate}
        for k, u in urls.items():
            out["open_loop"][share][k] = await base.open_loop(u, bodies if k != "noop" else [b"{}"], rate, s)
    out["oip"] = await oip(http, grpc_target, args.work, args.callers, s)
    out["oip_callers"] = args.callers
    return out


def report(r: dict) -> None:
    ratio = lambda a, b: a["rps"] / b["rps"]  # noqa: E731
    lat = lambda x: f"{x['p50_ms']:6.1f} /{x['p99_ms']:6.1f}"  # noqa: E731
    print(f"\nfeatures in the bare app: {r['features_source']}")
    print("\nclosed loop (wrk): req/s, p50 / p99 ms")
    print(f"{'conns':>5} | {'predict':>22} | {'no-op':>22} | {'bare uvicorn':>22} | pred/noop pred/bare")
    for c, x in r["closed_wrk"].items():
        cells = " | ".join(f"{x[k]['rps']:7.0f} {lat(x[k])}" for k in ("predict", "noop", "bare"))
        errs = sum(x[k]["errors"] for k in x)
        print(
            f"{c:>5} | {cells} | {ratio(x['predict'], x['noop']):9.2f} {ratio(x['predict'], x['bare']):9.2f}"
            + (f"  errors {errs}" if errs else "")
        )
    top = r["closed_wrk"][CONNECTIONS[-1]]
    met = ratio(top["predict"], top["noop"]) >= 0.7 and top["predict"]["p99_ms"] < 50
    print(
        f"goal >= 0.7x no-op and p99 < 50 ms at {CONNECTIONS[-1]}: {ratio(top['predict'], top['noop']):.2f}x, "
        f"p99 {top['predict']['p99_ms']:.1f} ms -> {'met' if met else 'missed'}"
    )
    print(f"\nopen loop (asyncio, fixed rate); peak (asyncio closed loop) {r['peak_asyncio']:.0f} req/s")
    print(
        f"{'share':>5} {'req/s':>6} | {'predict p50/p99':>15} | {'no-op p50/p99':>15} | {'bare p50/p99':>15} | errors"
    )
    for share, x in r["open_loop"].items():
        errs = "/".join(str(x[k]["errors"]) for k in ("predict", "noop", "bare"))
        cells = " | ".join(f"{lat(x[k]):>15}" for k in ("predict", "noop", "bare"))
        print(f"{share:>4}% {x['rate']:6.0f} | {cells} | {errs}")
    worst = max(x["predict"]["p99_ms"] for s, x in r["open_loop"].items() if s <= 80)
    verdict = "met" if worst < 100 else f"missed by {worst - 100:.0f} ms"
    print(f"goal p99 < 100 ms up to 80 % of peak: worst p99 {worst:.1f} ms -> {verdict}")
    print(f"\nOIP v2 ModelInfer, closed loop, {r['oip_callers']} concurrent callers: req/s, p50 / p99 ms")
    print(f"{'rows':>4} | {'HTTP (JSON)':>22} | {'gRPC':>22} | gRPC/HTTP")
    for n, x in r["oip"].items():
        h, g = x["http"], x["grpc"]
        errs = f"  errors {h['errors']}/{g['errors']}" if h["errors"] + g["errors"] else ""
        print(f"{n:>4} | {h['rps']:7.0f} {lat(h)} | {g['rps']:7.0f} {lat(g)} | {ratio(g, h):9.2f}{errs}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--callers", type=int, default=8, help="concurrent OIP callers")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "serving")
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    candidates = list(range(1, 400))
    if args.bare:
        serve_bare(args.bare, candidates)
        return
    base.PORT = free_port()  # env() reads it: the Serve HTTP port
    grpc_port, bare_port = free_port(), free_port()
    base.prepare(args.work, args.rows)
    environ = {**base.env(args.work), "MLSYS_SERVE__GRPC_PORT": str(grpc_port)}
    here = str(Path(__file__).resolve())
    procs = []
    try:
        procs.append(
            start([sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--serve", "haproxy"], environ)
        )
        procs.append(start([sys.executable, here, "--bare", str(bare_port)], environ))
        http = f"http://127.0.0.1:{base.PORT}"
        entities = asyncio.run(base.known_entities(http, candidates))
        results = asyncio.run(
            measure(http, f"http://127.0.0.1:{bare_port}", f"127.0.0.1:{grpc_port}", entities, args)
        )
    finally:
        for p in procs:
            p.stdin.close()
            if p.poll() is None and p.args[-1] == str(bare_port):
                p.terminate()  # uvicorn does not read stdin
            p.wait(timeout=120)
    report(results)
    out = ROOT / "benchmarks" / "results" / "serving_floor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
