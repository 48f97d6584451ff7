"""Benchmark: how fast the command line answers, against Ray's own CLI, one run.

    python benchmarks/cli.py --repeat 7

Wall time (median of `--repeat` runs, each a fresh process) of `mlsys --help`, of a config
error (`mlsys --config FILE train` on a file with an unknown key) and of `ray --help`, the
baseline: a CLI that imports only what the chosen command needs answers before Ray's.
Writes benchmarks/results/cli.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wall(cmd: list[str], repeat: int, *, expect_error: bool = False) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        if (done.returncode != 0) != expect_error:
            raise RuntimeError(f"{cmd} exited {done.returncode}: {done.stderr[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.yaml"
        bad.write_text("mlp:\n  epochs: 3\n  epoch: 4\n")
        results = {
            "mlsys --help": wall([str(BIN / "mlsys"), "--help"], args.repeat),
            "mlsys train (config error)": wall(
                [str(BIN / "mlsys"), "--config", str(bad), "train"], args.repeat, expect_error=True
            ),
            "ray --help": wall([str(BIN / "ray"), "--help"], args.repeat),
        }
    baseline = results["ray --help"]
    for name, seconds in results.items():
        print(f"{name:28} {seconds:6.2f} s  ({seconds / baseline:.2f}x ray --help)")
    out = ROOT / "benchmarks" / "results" / "cli.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
