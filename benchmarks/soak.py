"""Soak: the real service for N minutes under mixed traffic and faults, a production week compressed.

    python benchmarks/soak.py --minutes 10

Setup as the serving tests do it (tests/helpers.py): a generated data set through ETL into a
fresh storage under a temporary folder, features materialized into the online store, champion
and challenger quick bundles registered; the app on its own port with two ingress replicas
(HAProxy, the default proxy) on a local cluster with a dashboard (for the actors' PIDs). The
monitor's bounded buffers are set small so that they fill during warm-up, as they would within
the first hours of a real week. Then, from several threads of this process:

- predictions by entity id, by raw features and as small batches (entity ids and features mixed);
- feedback for real request ids (sampled from the answers, with their receipts) and for invented ids (403);
- reads of /experiment/report and /monitor/drift;
- malformed bodies: bad JSON, strings for numbers, 1e308, over-long strings, an unknown entity;

and faults at set times: one ingress replica killed (`ray.kill(..., no_restart=True)`, as
tests/integration/test_resilience.py does; Serve replaces it) and the drift monitor actor
killed (Ray restarts it; it rebuilds from its snapshot and log, as in test_monitoring.py).

It reports: requests sent by kind, responses by status per kind; 5xx (and no-answer) on valid
requests, split into those in flight across the replica kill, those on monitor routes while the
monitor restarted, and the rest; prediction records answered vs persisted in the traffic log
(`read_records` over `<storage>/traffic`) less the drops the monitor counts (`dropped_records`
in GET /monitor/drift), and acknowledged feedback vs persisted; the RSS of the monitor and of
each ingress replica process every ~10 s, with first/last/peak after warm-up per process.
Goals printed: zero 5xx on valid requests outside the killed replica's in-flight ones, zero
persisted records lost, memory flat after warm-up. Writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PORT = 8141
DASHBOARD_PORT = 8268
SAMPLE_EVERY_S = 10.0
SERVE_NAMESPACE = "serve"  # where Serve names its replica actors
VALID = ("predict_entity", "predict_features", "predict_batch", "feedback_known", "read")
BAD = ("bad_json", "string_number", "huge_number", "long_string", "unknown_entity", "feedback_unknown")
EXPECTED = {
    **dict.fromkeys(VALID, 200),
    **dict.fromkeys(BAD[:4], 422),
    "unknown_entity": 404,
    "feedback_unknown": 403,  # an invented request id has no receipt
}
MONITOR_ROUTES = ("feedback_known", "read")  # answered by the monitor actor
NO_ANSWER = "no answer"  # a connection error or timeout after the client's own retries


# ---------------------------------------------------------------- setup


def soak_config(work: Path, replicas: int):
    from tests.configs import make_config

    return make_config(
        work,
        ray={"num_cpus": 6, "include_dashboard": True, "dashboard_port": DASHBOARD_PORT},
        serve={
            "http_port": PORT,
            "ingress": {"min_replicas": replicas, "max_replicas": replicas},
            "experiment": {"name": "exp-soak", "split": {"champion": 0.5, "challenger": 0.5}},
        },
        # Small bounds, so the buffers are full after warm-up and memory should stay flat.
        monitor={
            "window": 1000,
            "remembered_predictions": 20_000,
            "pending_feedback": 5_000,
            "snapshot_minutes": 1,
        },
        retrain={"schedule": "none", "on_drift": False},
    )


def start_service(cfg, work: Path) -> tuple[str, list[int], list[dict]]:
    """Data, features, two registered models and the app. Returns URL, entity ids, feature rows."""
    from app.cluster.connection import connect
    from app.registry.registry import CHALLENGER, CHAMPION, Registry
    from app.serving import app as serving_app
    from tests.helpers import quick_bundle, served_entities

    connect(cfg.ray)
    entities, clean = served_entities(cfg, work)
    registry = Registry(cfg)
    registry.register(quick_bundle(cfg, clean, seed=1), params={}, alias=CHAMPION)
    registry.register(quick_bundle(cfg, clean, seed=2), params={}, alias=CHALLENGER)
    url = serving_app.start(cfg)
    return url, known_entities(url, entities), feature_rows(cfg, clean)


def known_entities(url: str, candidates: list[int]) -> list[int]:
    """The ids the online store answers for (ETL quarantines some rows of the raw data)."""
    import requests

    return [
        e for e in candidates if requests.post(f"{url}/predict", json={"entity_id": e}).status_code == 200
    ]


def feature_rows(cfg, clean) -> list[dict]:
    from app.serving.client import _json_value

    ds = cfg.dataset
    return [
        {c: _json_value(r[c]) for c in [*ds.features, ds.timestamp]}
        for r in clean.head(500).to_dict("records")
    ]


# ---------------------------------------------------------------- traffic


@dataclass
class Outcome:
    kind: str
    t0: float
    t1: float
    status: int | str
    retry_after: bool = False


@dataclass
class Log:
    """Everything the traffic threads saw, appended under one lock (times: seconds since start)."""

    start: float = field(default_factory=time.monotonic)
    outcomes: list[Outcome] = field(default_factory=list)
    answered: dict[str, float] = field(default_factory=dict)  # prediction request id -> answer time
    acked: dict[str, float] = field(default_factory=dict)  # feedback request id -> ack time
    for_feedback: deque = field(default_factory=lambda: deque(maxlen=10_000))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.start


class Traffic:
    """Worker threads, each sending one kind of traffic at its own pace until stopped."""

    def __init__(self, url: str, entities: list[int], rows: list[dict], log: Log, outcomes_token: str):
        self.url, self.entities, self.rows, self.log = url, entities, rows, log
        self.producer = {"Authorization": f"Bearer {outcomes_token}"}  # feedback comes from a producer
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        plan = [  # (worker, pause between its requests in s)
            (self.predict_entity, 0.005),
            (self.predict_entity, 0.005),
            (self.predict_features, 0.01),
            (self.predict_batch, 0.05),
            (self.feedback, 0.01),
            (self.malformed, 0.05),
            (self.read, 1.0),
        ]
        for i, (worker, pause) in enumerate(plan):
            thread = threading.Thread(target=self._loop, args=(worker, pause, i), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _loop(self, worker, pause: float, seed: int) -> None:
        from app.serving.client import ServiceClient

        session = ServiceClient(self.url).session  # the documented client's retry policy
        rng = random.Random(seed)
        while not self.stop.is_set():
            worker(session, rng)
            self.stop.wait(pause)

    def _send(self, session, kind: str, method: str, path: str, **kw):
        import requests

        t0 = self.log.now()
        try:
            resp = session.request(method, self.url + path, timeout=30, **kw)
            status, retry_after = resp.status_code, "retry-after" in resp.headers
        except requests.RequestException:
            resp, status, retry_after = None, NO_ANSWER, False
        with self.log.lock:
            self.log.outcomes.append(Outcome(kind, t0, self.log.now(), status, retry_after))
        return resp if status == 200 else None

    def _predicted(self, resp, rng) -> None:
        body = resp.json()
        with self.log.lock:
            for p in body.get("predictions", [body]):
                self.log.answered[p["request_id"]] = self.log.now()
                if rng.random() < 0.25:
                    self.log.for_feedback.append((p["request_id"], p["feedback_token"]))

    def _features(self, rng) -> dict:
        return dict(rng.choice(self.rows))

    def predict_entity(self, session, rng) -> None:
        resp = self._send(
            session, "predict_entity", "POST", "/predict", json={"entity_id": rng.choice(self.entities)}
        )
        if resp is not None:
            self._predicted(resp, rng)

    def predict_features(self, session, rng) -> None:
        body = {"features": self._features(rng), "key": f"user-{rng.randrange(10_000)}"}
        resp = self._send(session, "predict_features", "POST", "/predict", json=body)
        if resp is not None:
            self._predicted(resp, rng)

    def predict_batch(self, session, rng) -> None:
        instances = [
            {"entity_id": rng.choice(self.entities)}
            if rng.random() < 0.5
            else {"features": self._features(rng)}
            for _ in range(rng.randint(2, 8))
        ]
        resp = self._send(session, "predict_batch", "POST", "/predict", json={"instances": instances})
        if resp is not None:
            self._predicted(resp, rng)

    def feedback(self, session, rng) -> None:
        with self.log.lock:
            known = self.log.for_feedback.popleft() if self.log.for_feedback and rng.random() < 0.8 else None
        kind = "feedback_known" if known else "feedback_unknown"
        rid, receipt = known or (uuid.uuid4().hex, "1." + "0" * 32)
        body = {"request_id": rid, "label": rng.randint(0, 1), "feedback_token": receipt}
        resp = self._send(session, kind, "POST", "/feedback", json=body, headers=self.producer)
        if resp is not None:
            with self.log.lock:
                self.log.acked[rid] = self.log.now()

    def read(self, session, rng) -> None:
        self._send(session, "read", "GET", rng.choice(["/experiment/report", "/monitor/drift"]))

    def malformed(self, session, rng) -> None:
        kind = rng.choice([k for k in BAD if k != "feedback_unknown"])  # that one: `feedback`
        if kind == "bad_json":
            self._send(session, kind, "POST", "/predict", data=b'{"entity_id": 1,', headers=_JSON)
            return
        if kind == "unknown_entity":
            self._send(session, kind, "POST", "/predict", json={"entity_id": 10**12 + rng.randrange(10**6)})
            return
        bad = {
            "string_number": ("age", "41"),
            "huge_number": ("income", 1e308),
            "long_string": ("country", "X" * 5000),
        }
        column, value = bad[kind]
        self._send(
            session, kind, "POST", "/predict", json={"features": {**self._features(rng), column: value}}
        )


_JSON = {"content-type": "application/json"}


# ---------------------------------------------------------------- faults


@dataclass
class Fault:
    kind: str
    at: float  # s since start, when the kill was issued
    done: float  # when the kill call returned
    victim: str
    recovered_s: float | None = None  # until the replacement is up (replica) or answers (monitor)


def ingress_replicas() -> set[str]:
    import ray

    from app.serving.app import APP_NAME

    prefix = f"SERVE_REPLICA::{APP_NAME}#ingress#"
    return {
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    }


def kill_replica(log: Log, count: int) -> Fault:
    import ray

    victim = sorted(ingress_replicas())[0]
    at = log.now()
    # no_restart: a crash Ray cannot undo; Serve's controller must notice and replace it.
    ray.kill(ray.get_actor(victim, namespace=SERVE_NAMESPACE), no_restart=True)
    fault = Fault("replica", at, log.now(), victim)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = ingress_replicas()
        if len(alive) >= count and victim not in alive:
            fault.recovered_s = log.now() - at
            break
        time.sleep(0.25)
    return fault


def monitor_handle(cfg):
    import ray

    from app.cluster.actors import ACTOR_NAMESPACE, actor_name
    from app.monitoring.monitor import MONITOR

    return ray.get_actor(actor_name(MONITOR, str(cfg.storage.path())), namespace=ACTOR_NAMESPACE)


def kill_monitor(log: Log, cfg) -> Fault:
    import ray

    at = log.now()
    ray.kill(monitor_handle(cfg), no_restart=False)  # a crash: Ray restarts it, its memory is gone
    fault = Fault("monitor", at, log.now(), "drift monitor")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            ray.get(monitor_handle(cfg).drift.remote(), timeout=5)
            fault.recovered_s = log.now() - at
            break
        except (ray.exceptions.RayError, ValueError):
            time.sleep(0.5)
    return fault


def run_faults(cfg, log: Log, schedule: list[tuple[float, str]], replicas: int, faults: list[Fault]) -> None:
    for at, kind in schedule:
        time.sleep(max(0.0, at - log.now()))
        fault = kill_replica(log, replicas) if kind == "replica" else kill_monitor(log, cfg)
        faults.append(fault)
        print(
            f"[{fault.at:6.1f} s] killed {kind} ({fault.victim}); back after {fault.recovered_s} s",
            flush=True,
        )


# ---------------------------------------------------------------- memory


def sample_memory(cfg, log: Log, samples: list[dict], stop: threading.Event) -> None:
    """RSS of the monitor and each ingress replica process, every SAMPLE_EVERY_S."""
    import psutil
    from ray.util.state import list_actors

    from app.cluster.actors import actor_name
    from app.monitoring.monitor import MONITOR
    from app.serving.app import APP_NAME

    monitor = actor_name(MONITOR, str(cfg.storage.path()))
    replica = f"SERVE_REPLICA::{APP_NAME}#ingress#"
    while not stop.is_set():
        t = log.now()
        try:
            actors = list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
        except Exception as exc:  # the state API may time out under load: skip this sample
            print(f"[{t:6.1f} s] memory sample skipped: {str(exc).splitlines()[0][:120]}", flush=True)
            actors = []
        for a in actors:
            name = a.name or ""
            role = "monitor" if name == monitor else "ingress" if name.startswith(replica) else None
            if role and a.pid:
                try:
                    rss = psutil.Process(a.pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                samples.append({"t": round(t, 1), "role": role, "pid": a.pid, "rss_mb": round(rss, 1)})
        stop.wait(SAMPLE_EVERY_S)


def memory_summary(samples: list[dict], warmup_s: float) -> list[dict]:
    """Per process: RSS first/last/peak after its own warm-up (from when it was first seen)."""
    out = []
    for pid in sorted(
        {s["pid"] for s in samples}, key=lambda p: next(s["t"] for s in samples if s["pid"] == p)
    ):
        mine = [s for s in samples if s["pid"] == pid]
        warm = [s for s in mine if s["t"] >= mine[0]["t"] + warmup_s]
        row = {
            "role": mine[0]["role"],
            "pid": pid,
            "seen_s": [mine[0]["t"], mine[-1]["t"]],
            "samples": len(warm),
        }
        if len(warm) >= 2:
            first, last = warm[0]["rss_mb"], warm[-1]["rss_mb"]
            row.update(
                first_mb=first, last_mb=last, peak_mb=max(s["rss_mb"] for s in warm), growth_mb=last - first
            )
        out.append(row)
    return out


# ---------------------------------------------------------------- audit


def audit_log(cfg, url: str, log: Log, faults: list[Fault]) -> dict:
    """Answered predictions and acknowledged feedback against what the traffic log persisted."""
    import ray
    import requests

    from app.monitoring.traffic import FEEDBACK, PREDICTIONS, read_records, traffic_log

    time.sleep(3.0)  # replicas ship every 50 ms; the monitor flushes every second
    ray.get(monitor_handle(cfg).flush.remote())
    drift = requests.get(f"{url}/monitor/drift", timeout=30).json()
    root = traffic_log(cfg.storage)
    predictions = set(read_records(root, PREDICTIONS, ["request_id"])["request_id"])
    feedback = set(read_records(root, FEEDBACK, ["request_id"])["request_id"])
    dropped = int(drift["dropped_records"])
    lost = {rid: t for rid, t in log.answered.items() if rid not in predictions}
    lost_feedback = {rid: t for rid, t in log.acked.items() if rid not in feedback}
    return {
        "predictions": {
            "answered": len(log.answered),
            "persisted": len(predictions),
            "persisted_not_answered": len(predictions - set(log.answered)),
            "missing": len(lost),
            "dropped_counted": dropped,
            "lost_uncounted": max(0, len(lost) - dropped),
            "missing_near": near_faults(lost, faults),
        },
        "feedback": {
            "acknowledged": len(log.acked),
            "persisted": len(feedback),
            "missing": len(lost_feedback),
            "missing_near": near_faults(lost_feedback, faults),
        },
        "traffic_log": drift["traffic_log"],
    }


def near_faults(answered_at: dict[str, float], faults: list[Fault], before_s: float = 3.0) -> dict:
    """Missing ids by the fault they were answered just before or during (else 'elsewhere')."""
    out: Counter = Counter()
    for t in answered_at.values():
        hit = next((f for f in faults if f.at - before_s <= t <= f.at + (f.recovered_s or 0) + 1), None)
        out[f"{hit.kind} kill" if hit else "elsewhere"] += 1
    return dict(out)


def server_errors(log: Log, faults: list[Fault]) -> dict:
    """5xx and no-answer outcomes of valid requests, by where they happened."""
    replica = [f for f in faults if f.kind == "replica"]
    monitor = [f for f in faults if f.kind == "monitor"]
    split: Counter = Counter()
    examples: dict[str, list] = {}
    for o in log.outcomes:
        if o.kind not in VALID or not (o.status == NO_ANSWER or o.status >= 500):
            continue
        if any(o.t0 <= f.done and o.t1 >= f.at for f in replica):
            where = "in flight on the killed replica"
        elif o.kind in MONITOR_ROUTES and any(
            f.at <= o.t1 <= f.at + (f.recovered_s or 0) + 6 for f in monitor
        ):
            where = "monitor route while the monitor restarted" + (
                " (503 + Retry-After)" if o.retry_after else ""
            )
        else:
            where = "elsewhere"
        split[where] += 1
        if len(examples.setdefault(where, [])) < 5:
            examples[where].append(asdict(o))
    return {"by_where": dict(split), "examples": examples}


# ---------------------------------------------------------------- report


def tally(log: Log) -> dict:
    out: dict[str, Counter] = {}
    for o in log.outcomes:
        out.setdefault(o.kind, Counter())[str(o.status)] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def print_report(result: dict) -> None:
    s = result["seconds"]
    print(f"\nsoak: {s:.0f} s, {result['replicas']} ingress replicas, port {PORT}")
    print(f"\n{'kind':18} {'sent':>7} {'req/s':>6} {'expected':>8} | responses by status")
    for kind, statuses in result["responses"].items():
        n = sum(statuses.values())
        shown = ", ".join(f"{k}: {v}" for k, v in statuses.items())
        print(f"{kind:18} {n:7d} {n / s:6.1f} {EXPECTED[kind]:8d} | {shown}")
    print("\nfaults:")
    for f in result["faults"]:
        print(f"  {f['kind']:8} killed at {f['at']:6.1f} s, back after {f['recovered_s']} s ({f['victim']})")
    print("\n5xx / no answer on valid requests:", result["server_errors"]["by_where"] or "none")
    p, fb = result["audit"]["predictions"], result["audit"]["feedback"]
    print(
        f"\nprediction records: answered {p['answered']}, persisted {p['persisted']} "
        f"(+{p['persisted_not_answered']} never answered), missing {p['missing']} "
        f"(dropped and counted {p['dropped_counted']}; near {p['missing_near']})"
    )
    print(
        f"feedback: acknowledged {fb['acknowledged']}, persisted {fb['persisted']}, missing {fb['missing']} (near {fb['missing_near']})"
    )
    print_memory(result)
    print("\ngoals:")
    for line in result["goals"]:
        print("  " + line)


def print_memory(result: dict) -> None:
    by_t: dict[float, list] = {}
    for x in result["memory"]["samples"]:
        by_t.setdefault(x["t"], []).append(f"{x['role']}[{x['pid']}] {x['rss_mb']:.0f}")
    step = max(1, len(by_t) // 20)  # at most ~20 lines; the JSON has every sample
    print(f"\nRSS (MB), sampled every ~{SAMPLE_EVERY_S:.0f} s (every {step}. sample shown):")
    for t, cells in list(by_t.items())[::step]:
        print(f"  {t:6.1f} s  " + "  ".join(cells))
    print(f"after each process's first {result['memory']['warmup_s']:.0f} s:")
    for row in result["memory"]["summary"]:
        if "first_mb" in row:
            print(
                f"  {row['role']:8}[{row['pid']}] first {row['first_mb']:.0f}, last {row['last_mb']:.0f}, "
                f"peak {row['peak_mb']:.0f} MB: grew {row['growth_mb']:+.1f} MB over {row['samples']} samples"
            )
        else:
            print(f"  {row['role']:8}[{row['pid']}] too short-lived to judge (seen {row['seen_s']} s)")


def goals(result: dict, rss_tolerance_mb: float) -> list[str]:
    elsewhere = {k: v for k, v in result["server_errors"]["by_where"].items() if "killed replica" not in k}
    lost = result["audit"]["predictions"]["lost_uncounted"]
    grown = [r for r in result["memory"]["summary"] if r.get("growth_mb", 0) > rss_tolerance_mb]
    judged = [r for r in result["memory"]["summary"] if "growth_mb" in r]
    growth = (
        ", ".join(f"{r['role']}[{r['pid']}] {r['growth_mb']:+.1f} MB" for r in judged) or "no process judged"
    )
    return [
        f"{'MET ' if not elsewhere else 'MISSED'} zero 5xx on valid requests outside the killed replica's "
        f"in-flight ones: {sum(elsewhere.values())} {elsewhere or ''}",
        f"{'MET ' if not lost else 'MISSED'} zero prediction records lost beyond those counted as dropped: {lost} "
        f"(feedback acknowledged but not persisted: {result['audit']['feedback']['missing']})",
        f"{'MET ' if judged and not grown else 'MISSED'} memory flat after warm-up (within {rss_tolerance_mb:g} MB): {growth}",
    ]


# ---------------------------------------------------------------- main


def soak(args) -> dict:
    import ray
    from ray import serve

    work = Path(tempfile.mkdtemp(prefix="mlsys-soak-"))
    cfg = soak_config(work, args.replicas)
    try:
        url, entities, rows = start_service(cfg, work)
        print(
            f"serving at {url}: {len(entities)} entities, {len(rows)} feature rows; soaking {args.minutes} min",
            flush=True,
        )
        seconds = args.minutes * 60
        log, faults, samples, stop = Log(), [], [], threading.Event()
        schedule = [(args.replica_kill_at * seconds, "replica"), (args.monitor_kill_at * seconds, "monitor")]
        sampler = threading.Thread(target=sample_memory, args=(cfg, log, samples, stop), daemon=True)
        chaos = threading.Thread(
            target=run_faults, args=(cfg, log, sorted(schedule), args.replicas, faults), daemon=True
        )
        from app.serving.producers import producer_store

        token = producer_store(cfg).token_for("soak")
        traffic = Traffic(url, entities, rows, log, token)
        traffic.start()
        sampler.start()
        chaos.start()
        time.sleep(max(0.0, seconds - log.now()))
        traffic.finish()
        elapsed = log.now()
        chaos.join(timeout=180)
        stop.set()
        sampler.join(timeout=60)
        result = {
            "seconds": elapsed,
            "replicas": args.replicas,
            "responses": tally(log),
            "faults": [asdict(f) for f in faults],
            "server_errors": server_errors(log, faults),
            "audit": audit_log(cfg, url, log, faults),
            "memory": {
                "warmup_s": args.warmup,
                "samples": samples,
                "summary": memory_summary(samples, args.warmup),
            },
        }
        result["goals"] = goals(result, args.rss_tolerance_mb)
        return result
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--replica-kill-at", type=float, default=0.3, help="fraction of the run")
    parser.add_argument("--monitor-kill-at", type=float, default=0.5, help="fraction of the run")
    parser.add_argument("--warmup", type=float, default=60, help="s after a process is first seen")
    parser.add_argument("--rss-tolerance-mb", type=float, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the temporary storage")
    args = parser.parse_args()
    result = soak(args)
    print_report(result)
    out = ROOT / "benchmarks" / "results" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **result}, indent=1, default=str))


if __name__ == "__main__":
    main()
