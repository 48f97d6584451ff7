"""Connect to the Ray cluster: the one at `ray.address` / RAY_ADDRESS, or a local one.

Every command goes through `connect`, so the same command works on a laptop and against a
running cluster.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import ray

from app.config import RayConfig

log = logging.getLogger(__name__)
# Workers of a local cluster hand freed memory back to the OS: without this, idle workers keep
# the peak of their largest batch (GBs at 10M rows), as glibc arenas and Arrow's jemalloc pool.
WORKER_ENV = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_TRIM_THRESHOLD_": "1000000",
    # Setting the trim threshold also freezes glibc's mmap threshold at 128 KiB, so every
    # larger block (a training step's activations) became an mmap + page faults + munmap:
    # the same torch loop ran at 0.86x its speed outside Ray in a bare 1-CPU Ray task
    # (benchmarks/training.py). Blocks under 1 MiB come from the heap again (at 4 MiB the
    # 10M-row ETL peaked 0.2 GB higher and ran no faster: benchmarks/etl_features.py).
    "MALLOC_MMAP_THRESHOLD_": "1048576",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    # Ray Train's controller acts on its workers' state (started, reported, finished) once per
    # poll, every 2 s by default, and a run waits for several polls whatever its size: a bare
    # run of 10 reports took 33.9 s at 2 s and 13.9 s at 0.2 s (benchmarks/fixed_costs.py).
    # A poll is one small remote call per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    # Ray Train's preemption watcher logs a cloud node's drain notices: one more actor process
    # per training run, and its creation prints a Ray core error line (ray#53727) into the run's
    # output. Clusters that we start are never drained by a provider; joined clusters keep it.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # Libraries' deprecation notices in every worker's output would bury our progress lines
    # (Ray Data's, Tune's, Feast's): they are for those libraries' callers' developers.
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}

# A raylet starts as many workers at once as there are cores and warns in every driver's terminal
# at 4x that; ours may start as many as its logical CPUs, at least 8 (the demo's peak: 20 workers).
STARTUP_CONCURRENCY_ENV = "RAY_worker_maximum_startup_concurrency"

SERVE_PROXY_ENV = {
    "haproxy": {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        # A request in flight on a replica that dies gets an empty response: HAProxy replays it
        # on another replica instead of answering 500. Safe here because our routes are
        # replay-safe (scoring is pure, feedback dedupes by request_id); see README, limits.
        "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    },
    "default": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
}


# Secrets this process may hold that no Ray process or job should inherit: Ray's processes
# (and so every Ray Job) get the environment of the process that starts them, and the
# dashboard shows job environments.
ADMIN_TOKEN_ENV = "MLSYS_ADMIN_TOKEN"
SECRET_ENV = (ADMIN_TOKEN_ENV,)
_withheld: dict[str, str] = {}


def withhold_secrets() -> None:
    """Move secrets out of this process's environment (kept in memory) before Ray starts."""
    for name in SECRET_ENV:
        if name in os.environ:
            _withheld[name] = os.environ.pop(name)


def secret(name: str) -> str | None:
    """A secret from this process's environment, also after `withhold_secrets`."""
    return os.environ.get(name) or _withheld.get(name)


def connect(cfg: RayConfig) -> str | None:
    """Join the configured cluster, or start a local one sized by logical CPUs.

    Returns the dashboard URL when this call started or joined a cluster.
    """
    if ray.is_initialized():
        return None
    withhold_secrets()
    address = cfg.address or os.environ.get("RAY_ADDRESS") or started_head_address()
    quiet_ray_console()
    if address:
        log.info("connecting to Ray at %s", address)
        ctx = ray.init(address=address, log_to_driver=verbose_console())
    else:
        raylet = {STARTUP_CONCURRENCY_ENV: str(max(cfg.num_cpus, 8))}
        # Serve and the raylet read these when they start, so they go in before the cluster does.
        os.environ.update({**SERVE_PROXY_ENV[cfg.serve_proxy], **raylet})
        ctx = ray.init(
            address="local",  # a new cluster, whatever a stale `ray start` record says
            num_cpus=cfg.num_cpus,
            include_dashboard=cfg.include_dashboard,
            dashboard_host=cfg.dashboard_host,
            dashboard_port=cfg.dashboard_port,
            logging_level=logging.WARNING,
            log_to_driver=verbose_console(),
            runtime_env={"env_vars": {**WORKER_ENV, **SERVE_PROXY_ENV[cfg.serve_proxy]}},
        )
    quiet_ray_data_console()
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url else None


def verbose_console() -> bool:
    """Whether the user asked for libraries' INFO lines (`--verbose` sets the root logger to INFO)."""
    return logging.getLogger().getEffectiveLevel() <= logging.INFO


def quiet_ray_console() -> None:
    """Unless `--verbose`, workers' output (`log_to_driver`: trial workers' tracebacks as Tune ends
    them, Serve's and the Jobs API's INFO lines) and Ray's token-auth notice stay in Ray's logs."""
    if not verbose_console():
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def quiet_ray_data_console() -> None:
    """Ray Data prints each dataset's plan and, when stdout is not a terminal (a log, `ray job
    submit`), its progress every 10 s at INFO on the console. Unless INFO is asked for
    (`--verbose`), only its warnings reach the console; the full log stays in the Ray
    session's `ray-data` log file."""
    if verbose_console():
        return
    import ray.data  # noqa: F401  (configures the "ray.data" loggers on import)

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the console (the file handler is not one)
            handler.setLevel(logging.WARNING)
            handler.addFilter(not_progress_bar_notice)


def not_progress_bar_notice(record: logging.LogRecord) -> bool:
    """Ray Data's warning that progress bars are off: `read_parquet` turns them off on purpose."""
    return not record.getMessage().startswith("Progress bars disabled")


def read_parquet(paths: str | list[str], **kwargs: Any) -> ray.data.Dataset:
    """`ray.data.read_parquet` through Ray Data's V1 parquet reader.

    The V2 reader (Ray's default) starts a pool of 32 footer-reading actors, each a new Python
    process, for every read: on 2 cores a 113-file table took 13.2 s against 0.77 s with V1,
    whatever its rows (benchmarks/fixed_costs.py). Only our own reads switch: Feast's Ray
    engine keeps Ray's default (with V1 it materialized older rows than the newest for some
    entities: tests/integration/test_features.py).
    V1 samples files while planning, behind a progress bar of its own that would print into
    our output even in a log: it stays off for that call (the run's progress is unchanged).
    """
    import ray.data

    context = ray.data.DataContext.get_current()
    defaults = {
        "use_datasource_v2": context.use_datasource_v2,
        "enable_progress_bars": context.enable_progress_bars,
    }
    context.use_datasource_v2 = context.enable_progress_bars = False
    try:
        return ray.data.read_parquet(paths, **kwargs)
    finally:
        for name, value in defaults.items():
            setattr(context, name, value)


def join_running(cfg: RayConfig) -> None:
    """Join the cluster a service runs on (never start one: there would be nothing to read)."""
    withhold_secrets()
    quiet_ray_console()
    address = cfg.address or os.environ.get("RAY_ADDRESS") or "auto"
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=verbose_console())


def started_head_address() -> str | None:
    """The cluster a `ray start` on this machine left running, if it still answers.

    `ray.init()` without an address joins it, as every Ray script does; we decide first because
    joining rejects our `num_cpus`, and a record left by a killed head must not fail a command.
    """
    from ray._private.utils import read_ray_address  # where `ray start` records its address

    address = read_ray_address()
    return address if address and answers(address) else None


def answers(address: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def cpu_parallelism() -> int:
    """How many CPU-bound tasks are worth running at once.

    A local cluster advertises more logical CPUs than the machine has (see RayConfig.num_cpus),
    so on one node we use the real core count: more tasks would only add worker processes,
    memory and contention. On a multi-node cluster, its CPUs.
    """
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if len(ray.nodes()) == 1:
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, cpus)


def cpus_per_task() -> float:
    """Logical CPUs to request per CPU-bound task so that only `cpu_parallelism()` run at once.

    Requesting them (rather than capping an operator's concurrency) lets Ray Data fuse the
    operators that request the same (a transform and its write): fewer worker processes and
    less memory.
    """
    return max(1.0, ray.cluster_resources().get("CPU", 1) / cpu_parallelism())


def run_tasks(fn: Callable[..., Any], calls: Iterable[tuple], *, limit: int | None = None) -> list:
    """Run `fn(*args)` as Ray tasks with at most `limit` in flight; results in call order."""
    remote = ray.remote(num_cpus=1)(fn)
    limit = limit or cpu_parallelism()
    refs, results = [], {}
    for args in calls:
        if len(refs) - len(results) >= limit:
            pending = [r for r in refs if r not in results]
            ready, _ = ray.wait(pending, num_returns=1)
            results[ready[0]] = ray.get(ready[0])
        refs.append(remote.remote(*args))
    return [results[r] if r in results else ray.get(r) for r in refs]


def start_head(cfg: RayConfig) -> None:
    """Start a local Ray head that outlives this process (for `mlsys serve --detach`)."""
    import subprocess

    withhold_secrets()
    env = {**os.environ, **WORKER_ENV, **SERVE_PROXY_ENV[cfg.serve_proxy]}
    cmd = [
        "ray",
        "start",
        "--head",
        f"--num-cpus={cfg.num_cpus}",
        "--disable-usage-stats",
        f"--include-dashboard={str(cfg.include_dashboard).lower()}",
        f"--dashboard-host={cfg.dashboard_host}",
        f"--dashboard-port={cfg.dashboard_port}",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{done.stderr[-2000:]}")


ACTOR_NAMESPACE = "mlsys"


def actor_name(kind: str, storage_root: str) -> str:
    """One actor of a kind per storage root, so two deployments on one cluster never share state."""
    import hashlib

    return f"mlsys-{kind}-{hashlib.sha256(storage_root.encode()).hexdigest()[:8]}"


def call_self_after_init(method: str) -> None:
    """From an actor's constructor: call its own `method` once the constructor returns (a
    call to itself, queued behind construction). Starts a detached actor's background loop
    at creation and again after every restart, not at its first caller's call. Does nothing
    outside an actor (the class used as a plain object)."""
    try:
        handle = ray.get_runtime_context().current_actor
    except Exception:  # not in an actor
        return
    getattr(handle, method).remote()


def detached_actor(cls: type, kind: str, storage_root: str, *args, **options):
    """Get or create a named, detached actor that Ray restarts whenever it dies.

    Detached: it outlives the process that created it (a CLI command, a replica). Any number of
    callers get the same actor; a restarted one re-runs its constructor (rebuild from disk there)."""
    return (
        ray.remote(cls)
        .options(
            name=actor_name(kind, storage_root),
            namespace=ACTOR_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,  # mostly waiting; it must never keep a replica or a trial from being placed
            **options,
        )
        .remote(*args)
    )
