"""Benchmark: drift alarms on stationary traffic and on a real shift, with and without the
calendar features alerting, in one run.

    python benchmarks/drift_alarms.py --windows 20

The reference is the built-in data (the training distribution, calendar parts included, as a
model bundle profiles it). Live traffic is fresh rows from the same generator sent as raw
features without a timestamp, so their calendar features come from the time they arrive:
- stationary, compressed: every window arrives within minutes (one hour of one day);
- stationary, spread over a day: each row arrives at its own time of day, all on one day;
- drifted: the generator's `--drift 1.0` (income shifted, country mix changed, a new country).
For each, the share of `monitor.window`-sized windows that raise the drift alert, with the
calendar features watched only (the default) and alerting (`monitor.alert_on_calendar: true`).
Goal: no false alert on stationary traffic; the shift caught in its first window.
Writes benchmarks/results/drift_alarms.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import load_config  # noqa: E402
from app.data.synthetic import Defects, generate  # noqa: E402
from app.features.transforms import add_features, feature_spec  # noqa: E402
from app.model.profile import reference_profile  # noqa: E402
from app.monitoring.drift import DriftWindow  # noqa: E402
from app.serving.scoring import raw_rows_to_frame  # noqa: E402

CLEAN = Defects(0, 0, 0, 0, 0, 0)
START = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def reference(cfg, rows: int) -> dict:
    spec = feature_spec(cfg)
    train = add_features(generate(rows, seed=1, defects=CLEAN), cfg)
    profile = reference_profile(train, list(spec.numeric), [*spec.time, *spec.categorical])
    ignored = set(cfg.monitor.ignore_features)
    return {kind: {k: v for k, v in p.items() if k not in ignored} for kind, p in profile.items()}


def live_windows(cfg, scenario: str, windows: int, size: int, seed: int):
    """Model-feature frames of `size` rows, as the ingress derives them from raw requests."""
    for w in range(windows):
        raw = generate(size, seed=seed + w, defects=CLEAN, drift=1.0 if scenario == "drifted" else 0.0)
        rows = raw[cfg.dataset.features].to_dict("records")
        if scenario == "stationary, spread over a day":
            # Each row keeps the generator's time of day, on one day: the day's own rhythm.
            stamps = pd.to_datetime(raw[cfg.dataset.timestamp], utc=True, errors="coerce").fillna(START)
            times = [START.replace(hour=t.hour, minute=t.minute) for t in stamps]
            frame = raw_rows_to_frame(
                [{**r, cfg.dataset.timestamp: t.isoformat()} for r, t in zip(rows, times, strict=True)], cfg
            )
        else:  # compressed: one window within minutes, windows minutes apart
            frame = raw_rows_to_frame(rows, cfg, now=START + timedelta(minutes=5 * w))
        yield frame


def run(windows: int, size: int, seed: int) -> dict:
    cfg = load_config(ROOT / "deployments" / "config" / "local.yaml")
    profile = reference(cfg, 20_000)
    calendar = frozenset(cfg.features.time)
    out = {}
    for scenario in ("stationary, compressed", "stationary, spread over a day", "drifted"):
        alerts = {"calendar watched (default)": [], "calendar alerting": []}
        top = []
        for frame in live_windows(cfg, scenario, windows, size, seed):
            window = DriftWindow(profile)
            window.add(frame)
            watched = window.report(psi_alert=cfg.monitor.psi_alert, watch_only=calendar)
            alerting = window.report(psi_alert=cfg.monitor.psi_alert)
            alerts["calendar watched (default)"].append(watched["alert"])
            alerts["calendar alerting"].append(alerting["alert"])
            top.append(sorted(alerting["drifted"]))
        out[scenario] = {
            name: {
                "alert_share": float(np.mean(a)),
                "first_alert_window": (a.index(True) + 1) if True in a else None,
            }
            for name, a in alerts.items()
        }
        out[scenario]["features over the threshold"] = sorted({f for t in top for f in t})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--size", type=int, default=5000, help="records per window (monitor.window)")
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    res = run(args.windows, args.size, args.seed)
    print(f"{args.windows} windows of {args.size:,} records per scenario; PSI alert > 0.2")
    print(f"{'scenario':<32}{'calendar watched (default)':>30}{'calendar alerting':>24}  features over 0.2")
    for scenario, r in res.items():
        cells = []
        for name in ("calendar watched (default)", "calendar alerting"):
            share, first = r[name]["alert_share"], r[name]["first_alert_window"]
            cells.append(f"{share:.0%} alert" + (f", 1st in #{first}" if first else ""))
        over = ", ".join(r["features over the threshold"]) or "-"
        print(f"{scenario:<32}{cells[0]:>30}{cells[1]:>24}  {over}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "drift_alarms.json").write_text(json.dumps({"args": vars(args), "results": res}, indent=1))


if __name__ == "__main__":
    main()
