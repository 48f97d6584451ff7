"""Connect to the Ray cluster: the one at `ray.address` / RAY_ADDRESS, or a local one.

Every command goes through `connect`, so the same command works on a laptop and against a
running cluster.
"""

from __future__ import annotations

import logging
import os
import socket

import ray

from app.cluster.console import quiet_ray_console, quiet_ray_data_console, verbose_console
from app.cluster.credentials import withhold_secrets
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


class ClusterUnavailable(RuntimeError):
    """The cluster to join refused this process or did not answer; says which and why."""


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
        ctx = _join(address)
    else:
        raylet = {STARTUP_CONCURRENCY_ENV: str(max(cfg.num_cpus, 8))}
        proxy = {**SERVE_PROXY_ENV[cfg.serve_proxy], **haproxy_side_ports(cfg.serve_proxy)}
        # Serve and the raylet read these when they start, so they go in before the cluster does.
        os.environ.update({**proxy, **raylet})
        ctx = ray.init(
            address="local",  # a new cluster, whatever a stale `ray start` record says
            num_cpus=cfg.num_cpus,
            include_dashboard=cfg.include_dashboard,
            dashboard_host=cfg.dashboard_host,
            dashboard_port=dashboard_port(cfg),
            logging_level=logging.WARNING,
            log_to_driver=verbose_console(),
            runtime_env={"env_vars": {**WORKER_ENV, **proxy}},
        )
    quiet_ray_data_console()
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url else None


def _join(address: str, **init_args):
    """ray.init on a running cluster; a refusal (token, version) or silence is one clear error."""
    try:
        return ray.init(address=init_address(address), log_to_driver=verbose_console(), **init_args)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "on this machine" if address == "auto" else f"at {address}"
        raise ClusterUnavailable(
            f"cannot join the Ray cluster {where}: {reason}{_auth_hint(address)}"
        ) from None


def init_address(address: str) -> str:
    """What to hand ray.init for `address`.

    Ray sends its token (`ray start --head` turns token authentication on, with the token in
    ~/.ray/auth_token) only to a cluster it finds itself ("auto"), never to an address it is
    given, so joining the local head by its address was refused for a missing token. The head
    this machine's `ray start` left running is joined as "auto", as `ray.init()` joins it.
    """
    if address != "auto" and address == started_head_address():
        return "auto"
    return address


def _auth_hint(address: str) -> str:
    """Ray's own error for a missing token names only the address; say what else it may be."""
    if address == "auto" or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return "; if it uses token authentication, set RAY_AUTH_MODE=token (the token in ~/.ray/auth_token)"


def dashboard_port(cfg: RayConfig) -> int:
    """The configured dashboard port, or a free one when another cluster on this machine holds
    it: the dashboard of a second local cluster could not bind it, and its start would fail."""
    if not cfg.include_dashboard or not answers(f"{_local(cfg.dashboard_host)}:{cfg.dashboard_port}", 0.2):
        return cfg.dashboard_port
    port = free_port()
    log.warning("dashboard port %d is taken (another Ray cluster?): using %d", cfg.dashboard_port, port)
    return port


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


# HAProxy's own metrics and stats pages listen on fixed ports (Serve's defaults), which a second
# local cluster on the same machine could not bind: its proxy would never start.
HAPROXY_SIDE_PORTS = {"RAY_SERVE_HAPROXY_METRICS_PORT": 9101, "RAY_SERVE_HAPROXY_STATS_PORT": 8404}


def haproxy_side_ports(serve_proxy: str) -> dict[str, str]:
    """Serve's defaults for HAProxy's side ports where they are free (or set by the user), else
    free ports the OS picks."""
    if serve_proxy != "haproxy":
        return {}
    chosen = {}
    for name, default in HAPROXY_SIDE_PORTS.items():
        if name in os.environ:
            continue
        chosen[name] = str(default if not answers(f"127.0.0.1:{default}", timeout_s=0.2) else free_port())
    return chosen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_running(cfg: RayConfig) -> None:
    """Join the cluster a service runs on (never start one: there would be nothing to read)."""
    withhold_secrets()
    quiet_ray_console()
    address = cfg.address or os.environ.get("RAY_ADDRESS") or "auto"
    _join(address, logging_level=logging.WARNING)


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
        f"--dashboard-port={dashboard_port(cfg)}",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{done.stderr[-2000:]}")
