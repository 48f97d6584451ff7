"""Benchmark: ETL + features on Ray Data against single-process pandas, and historical retrieval
against a pandas merge_asof, at several sizes of the built-in data set.

Every implementation runs in a fresh subprocess on the same generated input; the script prints
one table (rows/s, wall seconds, peak memory) with the pandas baseline from the same run and
writes benchmarks/results/etl_features.json.

    python benchmarks/etl_features.py --rows 1000000 10000000
    python benchmarks/etl_features.py --rows 1000000 --baseline-rev 8586426   # + an earlier revision's Ray run

Memory: pandas is one process, so its peak RSS is the whole story. For Ray we report the
driver's peak RSS and the peak of the sum of USS (unique memory) over the driver and every
Ray process it started (GCS, raylet, workers), sampled every second: the honest total.
Ray start-up (~5 s) is excluded from the timed section; it is printed separately.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MARKER = "BENCH-RESULT "
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------ measured implementations


def _tree_uss(proc: psutil.Process) -> dict[str, int]:
    """Unique memory per process of `proc` and its descendants, by role: Ray names its worker
    processes after what they run (`ray::IDLE`, `ray::ReadParquet->MapBatches(...)`)."""
    by_role: dict[str, int] = {}
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            role = "driver" if p.pid == proc.pid else _role(p)
            by_role[role] = by_role.get(role, 0) + p.memory_full_info().uss
    return by_role


def _peak_rss() -> int:
    """This process's own peak RSS in bytes. Not getrusage's ru_maxrss: Linux carries the
    parent's peak into a child started with vfork+exec, as subprocess does."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _role(p: psutil.Process) -> str:
    cmdline = p.cmdline()
    first = cmdline[0] if cmdline else p.name()
    if first.startswith("ray::"):
        return first.split(" ")[0][:60]
    for arg in cmdline[:3]:  # python -m/-u .../ray/_private/workers/default_worker.py, raylet, ...
        name = Path(arg).name
        if name and not name.startswith(("python", "-")):
            return name[:60]
    return p.name()


class TreeSampler(threading.Thread):
    """The peak of the summed unique memory, and what made it up at that moment."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.at_peak, self.stop = 0, {}, threading.Event()

    def run(self):
        me = psutil.Process()
        while not self.stop.is_set():
            by_role = _tree_uss(me)
            if sum(by_role.values()) > self.peak:
                self.peak, self.at_peak = sum(by_role.values()), by_role
            time.sleep(1.0)  # reading smaps is costly: sample gently


def _config(store: Path):
    from app.config import load_config

    os.environ["MLSYS_STORAGE__ROOT"] = str(store)
    os.environ["MLSYS_RAY__INCLUDE_DASHBOARD"] = "false"
    return load_config(ROOT / "deployments/config/local.yaml")


def run_ray(raw: str, store: Path) -> dict:
    import ray

    from app.cluster.connection import connect
    from app.data.etl import run_etl
    from app.features.store import FeatureClient

    cfg = _config(store)
    t0 = time.perf_counter()
    connect(cfg.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    startup = time.perf_counter() - t0
    sampler = TreeSampler()
    sampler.start()
    t0 = time.perf_counter()
    report = run_etl(cfg, raw)
    etl_s = time.perf_counter() - t0
    FeatureClient(cfg).build_table()
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    return {
        "seconds": seconds,
        "etl_s": etl_s,
        "features_s": seconds - etl_s,
        "cluster_uss_at_peak": dict(sorted(sampler.at_peak.items(), key=lambda kv: -kv[1])),
        "startup_s": startup,
        "rows_written": report.rows_written,
        "driver_peak_rss": _peak_rss(),
        "cluster_peak_uss": sampler.peak,
    }


def run_pandas(raw: str, store: Path) -> dict:
    """The same steps in one pandas process: read, clean, quarantine, dedupe, features, write."""
    import pandas as pd

    from app.data.schema import PART, QUARANTINE, REASON, clean_batch
    from app.features.transforms import feature_table_batch

    cfg = _config(store)
    ds = cfg.dataset
    t0 = time.perf_counter()
    files = sorted(Path(raw).glob("*.parquet"))
    df = clean_batch(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True), ds)
    bad = df[PART] == QUARANTINE
    store.mkdir(parents=True, exist_ok=True)
    df[bad].to_parquet(store / "quarantine.parquet")
    good = df[~bad].drop(columns=[REASON]).drop_duplicates([ds.entity, ds.timestamp])
    good.drop(columns=["_raw"]).rename(columns={PART: "date"}).to_parquet(
        store / "warehouse", partition_cols=["date"]
    )
    feats = feature_table_batch(good, cfg).assign(date=good[PART].to_numpy())
    feats.to_parquet(store / "features", partition_cols=["date"])
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows_written": len(good),
        "driver_peak_rss": _peak_rss(),
    }


def run_retrieval_ray(store: Path) -> dict:
    """FeatureClient.historical for every warehouse row (the training-set query)."""
    import ray

    from app.cluster.connection import connect
    from app.data import warehouse
    from app.features.store import FeatureClient

    cfg = _config(store)
    connect(cfg.ray)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = cfg.dataset
    entity_df = warehouse.read_table(cfg).select([ds.entity, ds.timestamp, ds.label]).to_pandas()
    t0 = time.perf_counter()
    n = FeatureClient(cfg).historical(entity_df).count()
    return {"seconds": time.perf_counter() - t0, "rows": n}


def run_retrieval_pandas(store: Path) -> dict:
    """Brute-force baseline: one pandas merge_asof over the whole feature table."""
    import pandas as pd
    import pyarrow.parquet as pq

    from app.data import warehouse
    from app.features.transforms import utc_us

    cfg = _config(store)
    ds = cfg.dataset
    entity_df = warehouse.read_table(cfg).select([ds.entity, ds.timestamp, ds.label]).to_pandas()
    t0 = time.perf_counter()
    feats = pq.read_table(str(cfg.storage.path(cfg.storage.features)), partitioning=None).to_pandas()
    feats = feats.rename(columns={ds.timestamp: "_fts"}).sort_values("_fts")
    feats["_fts"] = utc_us(feats["_fts"])
    left = entity_df.assign(**{ds.timestamp: utc_us(entity_df[ds.timestamp])}).sort_values(ds.timestamp)
    out = pd.merge_asof(
        left,
        feats,
        left_on=ds.timestamp,
        right_on="_fts",
        by=ds.entity,
        tolerance=pd.Timedelta(days=cfg.features.ttl_days),
    )
    return {"seconds": time.perf_counter() - t0, "rows": len(out)}


# ------------------------------------------------------------------ orchestration


def _child(kind: str, *args: str, root: Path = ROOT) -> dict:
    """One measured run in a fresh process, of this checkout's code or of another's (`root`)."""
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "etl_features.py"), "--child", kind, *args],
        capture_output=True,
        text=True,
        # The Ray workers the child starts import `app` from the same checkout: Ray puts the
        # driver's working folder on their path.
        cwd=root,
        env={**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(root)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-4000:]}")
    # Ray prints worker logs to stdout too: the result is the line with our marker.
    line = next(ln for ln in reversed(out.stdout.splitlines()) if ln.startswith(MARKER))
    return json.loads(line[len(MARKER) :])


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def bench(rows: int, work: Path, baseline: Path | None = None) -> dict:
    from app.data.synthetic import generate_chunks, write_dataset

    raw = work / f"raw-{rows}"
    if not raw.exists():
        write_dataset(generate_chunks(rows, seed=0, start="2026-01-05"), raw)
    result = {"rows": rows}
    for kind in ("ray", "pandas"):
        store = work / f"store-{kind}-{rows}"
        shutil.rmtree(store, ignore_errors=True)
        result[kind] = _child(kind, str(raw), str(store))
    if baseline is not None:  # the same Ray run, by an earlier revision's code
        store = work / f"store-baseline-{rows}"
        shutil.rmtree(store, ignore_errors=True)
        result["baseline"] = _child("ray", str(raw), str(store), root=baseline)
    ray_store = work / f"store-ray-{rows}"
    result["retrieval_ray"] = _child("retrieval_ray", str(ray_store))
    result["retrieval_pandas"] = _child("retrieval_pandas", str(ray_store))
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| rows | ETL+features: Ray Data rows/s | pandas rows/s | speed-up | Ray driver peak RSS | "
        "Ray cluster peak USS (all processes) | pandas peak RSS | historical: mlsys rows/s | "
        "pandas merge_asof rows/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n, ray_, pd_ = r["rows"], r["ray"], r["pandas"]
        lines.append(
            f"| {n:,} | {n / ray_['seconds']:,.0f} | {n / pd_['seconds']:,.0f} | "
            f"{pd_['seconds'] / ray_['seconds']:.2f}x | {_gb(ray_['driver_peak_rss'])} | "
            f"{_gb(ray_['cluster_peak_uss'])} | {_gb(pd_['driver_peak_rss'])} | "
            f"{r['retrieval_ray']['rows'] / r['retrieval_ray']['seconds']:,.0f} | "
            f"{r['retrieval_pandas']['rows'] / r['retrieval_pandas']['seconds']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument(
        "--baseline-rev",
        help="also run the Ray ETL + features of this git revision on the same input (e.g. the "
        "commit before the warehouse became an Iceberg table)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        fn = {
            "ray": run_ray,
            "pandas": run_pandas,
            "retrieval_ray": run_retrieval_ray,
            "retrieval_pandas": run_retrieval_pandas,
        }[kind]
        print(
            MARKER + json.dumps(fn(*rest[:-1], Path(rest[-1])) if len(rest) > 1 else fn(Path(rest[0]))),
            flush=True,
        )
        os._exit(0)  # skip interpreter teardown: pyarrow/Ray threads sometimes abort it
    work = args.work or Path(tempfile.mkdtemp(prefix="mlsys-bench-"))
    baseline = None
    if args.baseline_rev:
        baseline = work / "baseline-checkout"
        shutil.rmtree(baseline, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(baseline), args.baseline_rev],
            check=True,
        )
    results = []
    for rows in args.rows:
        results.append(bench(rows, work, baseline))
        print(f"done: {rows:,} rows", file=sys.stderr)
    print(table(results))
    for r in results:
        if "baseline" in r:
            now, then = r["ray"], r["baseline"]
            print(
                f"{r['rows']:,} rows, against {args.baseline_rev}: ETL {then['etl_s'] / now['etl_s']:.2f}x its speed, "
                f"features {then['features_s'] / now['features_s']:.2f}x, both {then['seconds'] / now['seconds']:.2f}x; "
                f"cluster peak USS {now['cluster_peak_uss'] / then['cluster_peak_uss']:.2f}x its memory "
                f"({_gb(now['cluster_peak_uss'])} vs {_gb(then['cluster_peak_uss'])})"
            )
    for r in results:
        ray_ = r["ray"]
        parts = ", ".join(f"{role} {_gb(uss)}" for role, uss in list(ray_["cluster_uss_at_peak"].items())[:8])
        print(
            f"{r['rows']:,} rows, Ray: ETL {ray_['etl_s']:.1f} s + features {ray_['features_s']:.1f} s; "
            f"at the cluster's peak ({_gb(ray_['cluster_peak_uss'])}): {parts}"
        )
    out = ROOT / "benchmarks" / "results" / "etl_features.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "results": results}, indent=2))
    if baseline is not None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
