"""Benchmark: learned alert bands (monitoring/bands.py) against the fixed thresholds, in one run.

    python benchmarks/bands.py

A small tree model is trained in-process on `--rows` built-in rows split by time, as the
pipeline splits them: the reference profile from the training rows, the learned bands from the
later validation and holdout rows (`bands.learn`, at each window size), the fixed AUC band from
the holdout AUC less `monitor.auc_drop`. Live traffic is fresh rows from the same generator
(new seeds, new users), judged window by window as the monitor judges them:
- input drift: a window alerts when a non-calendar feature's PSI is over its threshold
  (`psi_thresholds`: `monitor.psi_alert` 0.2 for all, or each feature's learned band), at
  each `--psi-windows` size;
- labelled performance: a window of `monitor.performance_window` outcomes alerts when its AUC
  (and, learned, its log loss) leaves the version's band (`performance_band`).
Two kinds of stationary traffic: "few users" windows hold a small slice of users with all their
events (the generator's ~8 per user, over its eight weeks, as one `generate` call per window sends
them), "many users" windows are consecutive slices in time of one large population (nearly one
event per user, hours of traffic each, as the reference chunks are). Reported: false alerts per 100 stationary windows, then the windows
until the first alert once the traffic shifts (`drift` for the inputs, `concept` for the
outcomes; the median over `--repeats` streams, each window judged on its own as the tumbling
windows are). Fixed is the baseline. Writes benchmarks/results/bands.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import load_config  # noqa: E402
from app.data.synthetic import Defects, generate  # noqa: E402
from app.features.transforms import add_features  # noqa: E402
from app.model.predictor import Predictor  # noqa: E402
from app.monitoring import bands  # noqa: E402
from app.monitoring.drift import DriftWindow  # noqa: E402
from app.monitoring.performance import window_metrics  # noqa: E402
from app.training.dataset import time_split  # noqa: E402
from app.training.fit import evaluate_bundle  # noqa: E402
from tests.helpers import quick_tree_bundle  # noqa: E402

CLEAN = Defects(0, 0, 0, 0, 0, 0)
START = "2026-01-05"  # a fixed start: the same rows on any day the benchmark runs
FEW, MANY = "few users", "many users"
LIVE_USERS = 10_000_000  # fresh traffic's user ids start here, apart from the training users
BANDS = (bands.FIXED, bands.LEARNED)


def features(cfg, raw: pd.DataFrame) -> pd.DataFrame:
    frame = add_features(raw, cfg)
    # time_split takes quantiles of the timestamp, which the generator writes as text.
    frame[cfg.dataset.timestamp] = pd.to_datetime(frame[cfg.dataset.timestamp], utc=True)
    return frame


def trained(cfg, rows: int, rounds: int, psi_windows: list[int]) -> dict:
    """The model, its holdout AUC, and its profile with the bands learned at each PSI window."""
    splits = time_split(features(cfg, generate(rows, seed=1, defects=CLEAN, start=START)), cfg)
    bundle = quick_tree_bundle(cfg, splits.train, seed=1, rounds=rounds)  # profiled on train rows
    auc = evaluate_bundle(bundle, splits, cfg.dataset.label)["holdout"]["auc"]
    m = cfg.monitor
    profiles = {}
    for size in psi_windows:
        learned = bands.learn(
            bundle, splits, cfg.dataset.label, window=size, performance_window=m.performance_window
        )
        # As the drift tracker follows a champion: the ignored features left out, no score column.
        profiles[size] = {
            "bands": learned,
            **{
                kind: {k: v for k, v in bundle.profile[kind].items() if k not in m.ignore_features}
                for kind in ("numeric", "categorical")
            },
        }
    return {"bundle": bundle, "splits": splits, "auc": auc, "profiles": profiles}


def windows(cfg, kind: str, count: int, size: int, seed: int, **shift):
    """`count` windows of `size` fresh rows of one kind of traffic (`shift`: drift=, concept=)."""
    first = LIVE_USERS + seed * 1_000_000
    if kind == FEW:
        for w in range(count):
            raw = generate(
                size, seed=seed * 1000 + w, first_user=first + w * size, defects=CLEAN, start=START, **shift
            )
            yield features(cfg, raw)
    else:  # a large population in time order, as traffic arrives and the reference is chunked
        frame = features(
            cfg, generate(count * size, seed=seed, first_user=first, defects=CLEAN, start=START, **shift)
        ).sort_values(cfg.dataset.timestamp, kind="stable")
        for w in range(count):
            yield frame.iloc[w * size : (w + 1) * size]


def psi_judge(cfg, profile: dict, size: int):
    """Per band: whether a window of traffic raises the drift alert, as DriftTracker judges it."""
    m, calendar = cfg.monitor, frozenset(cfg.features.time)
    thresholds = {}
    for mode in BANDS:
        thresholds[mode], used = bands.psi_thresholds(profile, window=size, fixed=m.psi_alert, mode=mode)
        if used != mode:
            raise SystemExit(f"no learned PSI band at {size} rows: too few reference rows (--rows)")

    def judge(frame: pd.DataFrame) -> dict[str, bool]:
        window = DriftWindow(profile)
        window.add(frame)
        return {
            mode: window.report(psi_alert=m.psi_alert, watch_only=calendar, thresholds=t)["alert"]
            for mode, t in thresholds.items()
        }

    alerting = {f: t for f, t in thresholds[bands.LEARNED].items() if f not in calendar}
    return judge, {"fixed": m.psi_alert, "learned": alerting}


def performance_judge(cfg, model: dict):
    """Per band: whether a window of labelled traffic is decayed, as PerformanceTracker judges it."""
    m = cfg.monitor
    profile = model["profiles"][next(iter(model["profiles"]))]  # any: the same holdout chunks
    band = {
        mode: bands.performance_band(
            profile, model["auc"], window=m.performance_window, auc_drop=m.auc_drop, mode=mode
        )
        for mode in BANDS
    }
    if band[bands.LEARNED].kind != bands.LEARNED:
        raise SystemExit("no learned performance band: too few holdout rows (--rows)")
    predictor = Predictor.from_bundle(model["bundle"])

    def judge(frame: pd.DataFrame) -> dict[str, bool]:
        scores = predictor.predict_proba(frame)
        w = window_metrics(scores, frame[cfg.dataset.label].to_numpy(dtype=int))
        return {mode: b.decayed(w["auc"], w["log_loss"]) for mode, b in band.items()}

    return judge, {mode: {"auc_low": b.auc_low, "log_loss_high": b.log_loss_high} for mode, b in band.items()}


def false_alerts(judge, frames) -> dict[str, float]:
    """Alerting windows per 100 stationary ones, per band."""
    verdicts = [judge(frame) for frame in frames]
    return {mode: 100 * float(np.mean([v[mode] for v in verdicts])) for mode in BANDS}


def delay(cfg, judge, kind: str, size: int, *, repeats: int, most: int, seed: int, **shift) -> dict:
    """Per band: the median count of shifted windows until the first alert (None: not within
    `most`), and each stream's count."""
    firsts: dict[str, list[int | None]] = {mode: [] for mode in BANDS}
    for r in range(repeats):
        found: dict[str, int | None] = dict.fromkeys(BANDS)
        for i, frame in enumerate(windows(cfg, kind, most, size, seed + r, **shift), start=1):
            for mode, alert in judge(frame).items():
                if alert and found[mode] is None:
                    found[mode] = i
            if all(v is not None for v in found.values()):
                break
        for mode in BANDS:
            firsts[mode].append(found[mode])
    out = {}
    for mode, values in firsts.items():
        med = float(np.median([np.inf if v is None else v for v in values]))
        out[mode] = {"median": None if np.isinf(med) else med, "each": values, "most": most}
    return out


def run(args) -> dict:
    cfg = load_config(ROOT / "deployments" / "config" / "local.yaml")
    t0 = time.perf_counter()
    model = trained(cfg, args.rows, args.rounds, args.psi_windows)
    out: dict = {"holdout_auc": model["auc"], "psi": {}, "performance": {}}
    for size in args.psi_windows:
        judge, thresholds = psi_judge(cfg, model["profiles"][size], size)
        res = {"thresholds": thresholds, "false_alerts_per_100": {}, "delay": {}}
        for k, kind in enumerate((FEW, MANY)):
            frames = windows(cfg, kind, args.windows, size, seed=100 + k)
            res["false_alerts_per_100"][kind] = false_alerts(judge, frames)
            for drift in args.drifts:
                res["delay"][f"{kind}, drift {drift}"] = delay(
                    cfg,
                    judge,
                    kind,
                    size,
                    repeats=args.repeats,
                    most=args.most,
                    seed=200 + 10 * k,
                    drift=drift,
                )
        out["psi"][size] = res
    size = cfg.monitor.performance_window
    judge, band = performance_judge(cfg, model)
    res = {"window": size, "bands": band, "false_alerts_per_100": {}, "delay": {}}
    for k, kind in enumerate((FEW, MANY)):
        res["false_alerts_per_100"][kind] = false_alerts(
            judge, windows(cfg, kind, args.windows, size, 300 + k)
        )
        for concept in args.concepts:
            res["delay"][f"{kind}, concept {concept}"] = delay(
                cfg,
                judge,
                kind,
                size,
                repeats=args.repeats,
                most=args.most,
                seed=400 + 10 * k,
                concept=concept,
            )
    out["performance"] = res
    out["seconds"] = time.perf_counter() - t0
    return out


def cell(fixed, learned, fmt) -> str:
    return f"{fmt(learned):>10}  (fixed {fmt(fixed)})"


def per_100(v: float) -> str:
    return f"{v:.0f}"


def windows_until(d: dict) -> str:
    """The median, and the fastest and slowest stream in brackets."""
    if d["median"] is None:
        return "-"
    found = [v for v in d["each"] if v is not None]
    slowest = f">{d['most']}" if len(found) < len(d["each"]) else max(found)
    return f"{d['median']:g} [{min(found)}-{slowest}]"


def print_table(args, res: dict) -> None:
    most = args.most
    print(
        f"{args.windows} stationary windows per row; delay: median windows until the first alert over "
        f"{args.repeats} shifted streams [fastest-slowest] ('-': none in {most}); holdout AUC {res['holdout_auc']:.3f}"
    )
    print(f"{'signal, window':<28}{'traffic':<34}{'learned':>10}  (fixed baseline)")
    for size, r in res["psi"].items():
        learned = r["thresholds"]["learned"]
        name = f"PSI, {size:,} rows"
        lo, hi = min(learned.values()), max(learned.values())
        print(
            f"{name:<28}{'learned thresholds':<34}{f'{lo:.3f}-{hi:.3f}':>10}  (fixed {r['thresholds']['fixed']:g})"
        )
        for kind, v in r["false_alerts_per_100"].items():
            print(
                f"{name:<28}{f'stationary, {kind}: alerts/100':<34}{cell(v['fixed'], v['learned'], per_100)}"
            )
        for label, d in r["delay"].items():
            print(f"{name:<28}{label + ': delay':<34}{cell(d['fixed'], d['learned'], windows_until)}")
    p = res["performance"]
    name = f"AUC/log loss, {p['window']} rows"
    b = p["bands"]
    print(
        f"{name:<28}{'AUC under':<34}{b['learned']['auc_low']:>10.3f}  (fixed {b['fixed']['auc_low']:.3f}); "
        f"learned log loss over {b['learned']['log_loss_high']:.3f}"
    )
    for kind, v in p["false_alerts_per_100"].items():
        print(f"{name:<28}{f'stationary, {kind}: alerts/100':<34}{cell(v['fixed'], v['learned'], per_100)}")
    for label, d in p["delay"].items():
        print(f"{name:<28}{label + ': delay':<34}{cell(d['fixed'], d['learned'], windows_until)}")
    print(f"{res['seconds']:.0f} s")


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=100_000, help="training rows; 30 %% are the bands' reference"
    )
    parser.add_argument("--rounds", type=int, default=60, help="boosting rounds of the model")
    parser.add_argument("--psi-windows", type=lambda t: [int(x) for x in t.split(",")], default=[500, 5000])
    parser.add_argument("--windows", type=int, default=100, help="stationary windows per kind of traffic")
    parser.add_argument("--drifts", type=floats, default=[1.0, 0.05], help="input shifts (generate's drift)")
    parser.add_argument("--concepts", type=floats, default=[1.0, 0.25, 0.1], help="outcome shifts (concept)")
    parser.add_argument("--repeats", type=int, default=5, help="shifted streams per shift")
    parser.add_argument("--most", type=int, default=20, help="shifted windows per stream at most")
    args = parser.parse_args()
    res = run(args)
    print_table(args, res)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "bands.json").write_text(json.dumps({"args": vars(args), "results": res}, indent=1, default=str))


if __name__ == "__main__":
    main()
