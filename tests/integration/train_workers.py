"""A training run on a thread of its own, and a real Ray Train worker process killed under it.

The worker is found among this test process's own descendants (the local Ray session it
started), by the Ray Train worker actor's process title, and killed with SIGKILL: the same
failure as a worker's machine going away, with no hook in the training code."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

WORKER_TITLE = "RayTrainWorker"  # Ray Train's worker actor class, in its process title


def train_worker_pids() -> set[int]:
    """PIDs of the Ray Train worker processes of this process's own Ray session."""
    pids = set()
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if WORKER_TITLE in " ".join(proc.cmdline()):
                pids.add(proc.pid)
    return pids


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """A run's checkpoint folders on disk, oldest first (Ray names them by time)."""
    return sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())


class CheckpointWatch:
    """A run's checkpoints as they appear on disk, each read once complete.

    Ray Train's controller deletes a checkpoint beyond `num_to_keep` when it registers a newer
    one, so a checkpoint seen and then gone proves the controller has registered newer ones: a
    worker group restarted from then on resumes from one of those (or a later one)."""

    def __init__(self, run_dir: Path, read: Callable[[Path], Any]) -> None:
        self.run_dir, self.read = run_dir, read
        self.seen: dict[str, Any] = {}  # folder name -> what `read` found in it

    def poll(self) -> dict[str, Any]:
        for d in checkpoint_dirs(self.run_dir):
            if d.name not in self.seen:
                try:
                    self.seen[d.name] = self.read(d)
                except Exception:  # still being written; read on a later poll
                    continue
        return self.seen

    def on_disk(self) -> set[str]:
        return {d.name for d in checkpoint_dirs(self.run_dir)}

    def superseded(self) -> Any:
        """What the newest checkpoint seen and since deleted held; None while there is none."""
        self.poll()
        gone = sorted(set(self.seen) - self.on_disk())
        return self.seen[gone[-1]] if gone else None


class BackgroundRun:
    """`fn()` running on a thread; the test watches it, kills a worker, then takes its result."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._outcome["result"] = fn()
        except BaseException as exc:  # re-raised in the test's thread by result()
            self._outcome["error"] = exc

    def wait_until(self, check: Callable[[], Any], *, timeout_s: float = 300, what: str = "") -> Any:
        """The first truthy `check()`, polled every 50 ms; fails if the run ends or time runs out first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if not self._thread.is_alive():
                self.result()  # raises the run's own error, if it failed
                raise AssertionError(f"the run ended before {what or 'the awaited state'}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or 'the awaited state'}")

    def kill_a_worker(self) -> int:
        """SIGKILL one Ray Train worker process of the run; returns its PID once it is gone."""
        pids = self.wait_until(train_worker_pids, what="a Ray Train worker process")
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(victim).wait(timeout=30)
        assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
        return victim

    def result(self, *, timeout_s: float = 600) -> Any:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the run did not finish within {timeout_s} s"
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["result"]
