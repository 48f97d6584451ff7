"""The monitor's snapshot and rebuild: a restart reads the snapshot plus the newer tail only, and
counts exactly what a rebuild from the whole log counts - through compaction, crashes mid-way,
retention and unreadable files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.config import MonitorConfig
from app.data.shared_files import SharedFiles, as_files
from app.files import atomic_write_parquet
from app.monitoring import compaction, snapshot
from app.monitoring.counts import ExperimentCounts
from app.monitoring.store import TrafficStore
from app.monitoring.traffic import FEEDBACK, HOUR_FORMAT, PREDICTIONS, hour_key, log_files, traffic_log

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 3, 1, tzinfo=timezone.utc)
CFG = MonitorConfig(retention_days=365, window=500)


# ------------------------------------------------------------------ a traffic log, seeded directly


def seed(root: Path | SharedFiles, *, hours: range, per_hour: int, parts: int, seed: int, tag: str) -> dict:
    """Write `per_hour` predictions an hour (2 % errors, 1 % re-delivered into another part) and
    feedback for 40 % of them (1 % duplicated, 0.5 % for unknown ids) as parquet parts, the way
    the monitor lays them out. Returns the counts a correct monitor reports for them."""
    rng = np.random.default_rng(seed)
    truth: dict[str, list[int]] = {}
    feedback, pending = [], 0
    end = START + timedelta(hours=hours.stop) - timedelta(seconds=1)
    for h in hours:
        at = START + timedelta(hours=h) + pd.to_timedelta(rng.integers(0, 3600, per_hour), unit="s")
        preds = pd.DataFrame(
            {
                "request_id": [f"{tag}{h}-{i}" for i in range(per_hour)],
                "logged_at": at,
                "experiment": "e",
                "variant": np.where(rng.random(per_hour) < 0.8, "champion", "challenger"),
                "model_version": 1,
                "shadow": False,
                "pred_score": rng.random(per_hour),
                "pred_label": rng.integers(0, 2, per_hour),
                "latency_ms": rng.random(per_hour) * 10,
                "status": np.where(rng.random(per_hour) < 0.98, "ok", "error"),
                "age": rng.normal(40, 10, per_hour),
            }
        )
        given = preds[(preds["status"] == "ok") & (rng.random(per_hour) < 0.4)]
        labels = rng.integers(0, 2, len(given))
        for variant, part in preds.groupby("variant"):
            ok = part["status"] == "ok"
            joined = given["variant"] == variant
            row = truth.setdefault(f"e/{variant}", [0, 0, 0, 0, 0])
            row[0] += int(ok.sum())
            row[1] += int((~ok).sum())
            row[2] += int(joined.sum())
            row[3] += int(labels[joined.to_numpy()].sum())
            row[4] += int((labels[joined.to_numpy()] == given.loc[joined, "pred_label"].to_numpy()).sum())
        fb = pd.DataFrame({"request_id": given["request_id"], "label": labels})
        fb["logged_at"] = np.minimum(
            given["logged_at"] + pd.to_timedelta(rng.integers(0, 1800, len(fb)), "s"), end
        )
        unknown = max(1, per_hour // 200)
        pending += unknown
        lost = pd.DataFrame({"request_id": [f"{tag}{h}-lost-{i}" for i in range(unknown)], "label": 1})
        lost["logged_at"] = START + timedelta(hours=h, minutes=59)
        feedback += [fb, fb.sample(frac=0.01, random_state=h), lost]
        _write_parts(
            root, PREDICTIONS, pd.concat([preds, preds.sample(frac=0.01, random_state=h)]), parts, tag
        )
    _write_parts(root, FEEDBACK, pd.concat(feedback), parts, tag)
    return {**truth, "pending": pending}


def _write_parts(root: Path | SharedFiles, kind: str, frame: pd.DataFrame, parts: int, tag: str) -> None:
    files = as_files(root)
    frame = frame.sample(frac=1, random_state=0)  # a re-delivery lands in some other part
    for hour, rows in frame.groupby(frame["logged_at"].dt.strftime(HOUR_FORMAT)):
        for k, chunk in enumerate(np.array_split(np.arange(len(rows)), parts)):
            table = pa.Table.from_pandas(rows.iloc[chunk].reset_index(drop=True), preserve_index=False)
            name = f"{'compact' if parts == 1 else 'part'}-{tag}-{k:04d}.parquet"
            files.write_parquet(files.uri(kind, hour, name), table)


def add(*truths: dict) -> dict:
    total: dict = {}
    for t in truths:
        for k, v in t.items():
            if k not in total:
                total[k] = list(v) if isinstance(v, list) else v
            elif isinstance(v, list):
                total[k] = [a + b for a, b in zip(total[k], v, strict=True)]
            else:
                total[k] += v
    return total


def summary(counts: ExperimentCounts) -> dict:
    out: dict = {
        f"{e}/{v}": [s.requests, s.errors, s.outcomes, s.positives, s.correct]
        for (e, v), s in sorted(counts.stats.items())
    }
    return {**out, "pending": len(counts.pending)}


def run_mode(root: str | Path, mode: str) -> dict:
    """One way of rebuilding the monitor's state from `root` (run in a fresh process to measure
    its peak memory): "snapshot" (what a restart does), "full" (the same code ignoring the
    snapshot), "legacy" (the old rebuild: every record of the log in one frame)."""
    root = Path(root)
    base = _rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    out: dict = {"mode": mode}
    capacities = {"capacity": CFG.remembered_predictions, "pending_capacity": CFG.pending_feedback}
    if mode in ("snapshot", "maintain"):  # maintain: then write the snapshot (a full rebuild first)
        store = TrafficStore(root, CFG)
        state = store.rebuild()
        out["summary"] = summary(state.counts)
        out.update(store.rebuilt)
        if mode == "maintain":
            store.maintain(state, now=START + timedelta(hours=len(log_files(root, PREDICTIONS))))
    elif mode == "full":
        state = snapshot.MonitorState(ExperimentCounts(**capacities))
        replay = snapshot.replay(root, state, keep=2 * CFG.window)
        out.update(
            summary=summary(state.counts), files_read=replay.files_read, records_read=replay.records_read
        )
    elif mode == "legacy":
        from app.monitoring.traffic import read_records

        counts = ExperimentCounts(**capacities)
        preds = read_records(root, PREDICTIONS)
        for rec in preds.to_dict("records"):
            counts.add_prediction(rec)
        for rec in read_records(root, FEEDBACK).to_dict("records"):
            counts.add_feedback(rec["request_id"], int(rec["label"]), "tests")
        out.update(summary=summary(counts), records_read=len(preds))
    out.update(seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu)
    out.update(base_mb=base, peak_mb=_peak_mb())
    return out


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    # The process's own high-water mark. Not getrusage's ru_maxrss: Linux carries the parent's
    # peak into a child started with vfork+exec (as subprocess does), so a child of a large
    # pytest process would report the parent's peak.
    return _status_mb("VmHWM")


def in_subprocess(root: Path, mode: str) -> dict:
    code = "import json, sys; from tests.unit.monitoring.test_snapshot import run_mode; print(json.dumps(run_mode(*sys.argv[1:])))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def files_in(root: Path) -> int:
    return sum(len(f) for kind in (PREDICTIONS, FEEDBACK) for f in log_files(root, kind).values())


# ------------------------------------------------------------------ tests


def test_a_restart_reads_the_snapshot_and_the_tail_and_counts_as_a_full_rebuild(tmp_path):
    history = seed(tmp_path, hours=range(6), per_hour=400, parts=3, seed=1, tag="a")
    store = TrafficStore(tmp_path, CFG)
    state = store.rebuild()
    assert summary(state.counts) == history and store.rebuilt["snapshot"] is False
    store.maintain(state, now=START + timedelta(hours=7, minutes=20))  # snapshot, then compact
    assert all(len(files) == 1 for files in log_files(tmp_path, PREDICTIONS).values())
    assert store.counters["compacted_files"] > 0

    tail = seed(tmp_path, hours=range(6, 8), per_hour=300, parts=3, seed=2, tag="b")
    late = seed(
        tmp_path, hours=range(2, 3), per_hour=50, parts=1, seed=3, tag="late"
    )  # lands in a compacted hour
    truth = add(history, tail, late)
    restarted = TrafficStore(tmp_path, CFG)
    state = restarted.rebuild()
    tail_files = files_in(tmp_path) - sum(len(h) for k in store.files.values() for h in k.values())
    assert restarted.rebuilt["snapshot"] and restarted.rebuilt["files_read"] == tail_files
    assert summary(state.counts) == truth == run_mode(tmp_path, "full")["summary"]


def test_windows_history_and_pending_feedback_survive_a_restart(tmp_path):
    seed(tmp_path, hours=range(2), per_hour=800, parts=2, seed=4, tag="w")
    store = TrafficStore(tmp_path, CFG)
    state = store.rebuild()
    state.history = [{"variant": "champion", "n": 500, "max_psi": 0.01}]
    store.maintain(state, now=START)  # nothing closed yet: a snapshot only
    again = TrafficStore(tmp_path, CFG).rebuild()
    assert again.history == state.history
    assert {v: len(r) for v, r in again.recent.items()} == {v: len(r) for v, r in state.recent.items()}
    assert len(again.recent["champion"]) == 2 * CFG.window
    assert list(again.counts.pending) == list(state.counts.pending)


def test_recent_records_of_mixed_types_do_not_stop_the_snapshot(tmp_path, caplog):
    counts = ExperimentCounts()
    counts.add_feedback("early", 1, "tests")
    recent = {"champion": [{"variant": "champion", "x": 1}, {"variant": "champion", "x": "one"}]}
    snapshot.save(tmp_path, snapshot.MonitorState(counts, recent))
    back = snapshot.load(tmp_path, keep=10, capacity=10, pending_capacity=10)
    assert back is not None and dict(back.counts.pending) == {"early": (1, "tests")} and back.recent == {}
    assert any("recent records" in r.getMessage() for r in caplog.records)


def test_a_crash_between_compacting_and_deleting_counts_nothing_twice(tmp_path, monkeypatch):
    truth = seed(tmp_path, hours=range(3), per_hour=300, parts=4, seed=5, tag="c")
    store = TrafficStore(tmp_path, CFG)
    real = compaction.compact_hour

    class Crash(Exception):
        pass

    def merge_then_crash(files, inputs, output):  # the merged file is in place, its inputs too
        folder = Path(files.location)
        tables = [pq.read_table(folder / n) for n in inputs if (folder / n).exists()]
        atomic_write_parquet(folder / output, pa.concat_tables(tables))
        raise Crash

    monkeypatch.setattr(compaction, "compact_hour", merge_then_crash)
    with pytest.raises(Crash):
        store.maintain(store.rebuild(), now=START + timedelta(hours=5))
    restarted = TrafficStore(tmp_path, CFG)
    state = restarted.rebuild()
    assert summary(state.counts) == truth and restarted.rebuilt["files_read"] == 0
    assert run_mode(tmp_path, "full")["summary"] == truth  # the log alone agrees (within-hour de-dup)

    monkeypatch.setattr(compaction, "compact_hour", real)
    restarted.maintain(state, now=START + timedelta(hours=5))  # finishes the job: one file an hour
    assert all(len(f) == 1 for kind in (PREDICTIONS, FEEDBACK) for f in log_files(tmp_path, kind).values())
    ids = (
        pq.read_table(sorted((tmp_path / PREDICTIONS).rglob("*.parquet"))[0]).column("request_id").to_pylist()
    )
    assert len(ids) == len(set(ids))  # re-deliveries de-duplicated in the compacted file
    assert (
        summary(TrafficStore(tmp_path, CFG).rebuild().counts)
        == truth
        == run_mode(tmp_path, "full")["summary"]
    )


def test_compaction_is_idempotent(tmp_path):
    truth = seed(tmp_path, hours=range(2), per_hour=200, parts=3, seed=6, tag="i")
    store = TrafficStore(tmp_path, CFG)
    state = store.rebuild()
    later = START + timedelta(hours=4)
    store.maintain(state, now=later)
    before = log_files(tmp_path, PREDICTIONS)
    store.maintain(state, now=later)  # nothing left to merge: nothing rewritten
    assert log_files(tmp_path, PREDICTIONS) == before
    assert summary(TrafficStore(tmp_path, CFG).rebuild().counts) == truth


@pytest.mark.parametrize("target", ["snapshot.json", "predictions-", "recent-"])
def test_an_unreadable_snapshot_is_treated_as_absent(tmp_path, caplog, target):
    truth = seed(tmp_path, hours=range(2), per_hour=300, parts=2, seed=7, tag="s")
    store = TrafficStore(tmp_path, CFG)
    store.maintain(store.rebuild(), now=START)
    path = next(p for p in (tmp_path / snapshot.SNAPSHOT).iterdir() if p.name.startswith(target))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
    restarted = TrafficStore(tmp_path, CFG)
    state = restarted.rebuild()
    assert restarted.rebuilt["snapshot"] is False and summary(state.counts) == truth
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0]


def test_a_truncated_part_is_skipped_counted_and_moved_aside(tmp_path, caplog):
    seed(tmp_path, hours=range(2), per_hour=300, parts=3, seed=8, tag="t")
    part = sorted((tmp_path / PREDICTIONS).rglob("*.parquet"))[1]
    lost = pq.read_table(part).to_pandas()
    part.write_bytes(part.read_bytes()[:100])
    store = TrafficStore(tmp_path, CFG)
    state = store.rebuild()  # no crash
    assert store.counters["unreadable_files"] == 1 and not part.exists()
    assert part.with_name(part.name + ".unreadable").exists()
    assert any(str(part) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    full = TrafficStore(tmp_path, MonitorConfig(retention_days=365, window=500))
    assert summary(full.rebuild().counts) == summary(state.counts)  # the part's records are simply absent
    counted = sum(s.requests + s.errors for s in state.counts.stats.values())
    assert counted == 2 * 300 - lost["request_id"].nunique() + _ids_only_in(lost, tmp_path)
    # counted once: the next snapshot carries the counter, nothing reads the part again
    store.maintain(state, now=START)
    again = TrafficStore(tmp_path, CFG)
    again.rebuild()
    assert again.counters["unreadable_files"] == 1


def test_a_part_without_a_needed_column_is_skipped_like_an_unreadable_one(tmp_path, caplog):
    truth = seed(tmp_path, hours=range(1), per_hour=100, parts=1, seed=13, tag="k")
    folder = next((tmp_path / PREDICTIONS).iterdir())
    pq.write_table(pa.table({"request_id": ["x"], "variant": ["champion"]}), folder / "part-odd.parquet")
    store = TrafficStore(tmp_path, CFG)
    assert summary(store.rebuild().counts) == truth and store.counters["unreadable_files"] == 1
    assert any("part-odd.parquet" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def _ids_only_in(lost: pd.DataFrame, root: Path) -> int:
    """Records of the lost part that another part also holds (re-deliveries): still counted."""
    others = pd.concat(pq.read_table(p).to_pandas() for p in (root / PREDICTIONS).rglob("*.parquet"))
    return int(lost["request_id"].drop_duplicates().isin(others["request_id"]).sum())


def test_retention_deletes_old_hours_and_the_counts_survive(tmp_path):
    truth = seed(tmp_path, hours=range(4), per_hour=200, parts=2, seed=9, tag="r")
    cfg = MonitorConfig(retention_days=1 / 12, window=500)  # two hours
    store = TrafficStore(tmp_path, cfg)
    store.maintain(store.rebuild(), now=START + timedelta(hours=4, minutes=30))
    assert store.counters["expired_hours"] == 4  # hours 0-1, predictions and feedback
    hours = sorted(log_files(tmp_path, PREDICTIONS))
    assert hours == [hour_key(START + timedelta(hours=h)) for h in (2, 3)]
    restarted = TrafficStore(tmp_path, cfg)
    assert summary(restarted.rebuild().counts) == truth and restarted.rebuilt["files_read"] == 0
    assert restarted.counters["expired_hours"] == 4


def test_pending_feedback_is_bounded_and_its_drops_are_counted(tmp_path):
    seed(tmp_path, hours=range(2), per_hour=2000, parts=1, seed=10, tag="p")  # 20 unknown ids
    store = TrafficStore(tmp_path, MonitorConfig(retention_days=365, pending_feedback=5))
    state = store.rebuild()
    assert len(state.counts.pending) == 5 and state.counts.pending_dropped == 15
    store.maintain(state, now=START)
    restored = TrafficStore(tmp_path, MonitorConfig(retention_days=365, pending_feedback=5)).rebuild()
    assert restored.counts.pending_dropped == 15 and list(restored.counts.pending) == list(
        state.counts.pending
    )


@pytest.mark.slow
def test_a_month_of_traffic_restarts_from_the_snapshot_in_bounded_memory(tmp_path):
    """1 M predictions (+ 0.4 M feedback) over 30 days, one compacted file an hour, snapshotted;
    then two hours of small parts. Prints each rebuild's time and peak RSS (fresh processes)."""
    history = seed(tmp_path, hours=range(720), per_hour=1400, parts=1, seed=11, tag="m")
    runs = [in_subprocess(tmp_path, "maintain")]  # a full rebuild, then the snapshot
    tail = seed(tmp_path, hours=range(720, 722), per_hour=1400, parts=40, seed=12, tag="n")
    runs += [in_subprocess(tmp_path, mode) for mode in ("snapshot", "full", "legacy")]
    for r in runs:
        print(
            f"\n{r['mode']:>8}: {r['seconds']:6.1f} s ({r['cpu_seconds']:5.1f} s CPU), peak RSS "
            f"{r['peak_mb']:5.0f} MB (after imports {r['base_mb']:3.0f} MB), "
            f"files read {r.get('files_read', 'all')}, records read {r.get('records_read')}"
        )
    by = {r["mode"]: r for r in runs}
    assert by["maintain"]["summary"] == history
    assert by["snapshot"]["snapshot"] and by["snapshot"]["files_read"] == 2 * 2 * 40  # the tail only
    assert by["snapshot"]["summary"] == by["full"]["summary"] == add(history, tail)
    grown = {mode: r["peak_mb"] - r["base_mb"] for mode, r in by.items()}
    assert grown["snapshot"] < 0.5 * grown["legacy"]  # generous: see the printed figures
    shutil.rmtree(tmp_path)


def test_the_log_its_snapshot_and_compaction_live_on_an_object_store(s3_server, tmp_path):
    """The same log on the S3 server: its parts, the snapshot and the compacted files are
    objects; a monitor restarted on another node (another write-ahead folder) reads the
    snapshot back and counts what a full rebuild counts."""
    from tests.configs import make_config
    from tests.conftest import STATE_BUCKET

    prefix = f"{STATE_BUCKET}/{tmp_path.name}"
    storage = {"state": f"s3://{prefix}", "catalog": s3_server.catalog()}
    log = traffic_log(make_config(tmp_path, storage=storage).storage)
    truth = seed(log, hours=range(3), per_hour=300, parts=3, seed=8, tag="o")
    store = TrafficStore(log, CFG, wal=tmp_path / "node-a")
    state = store.rebuild()
    assert summary(state.counts) == truth and store.rebuilt["files_read"] == 2 * 3 * 3
    store.maintain(state, now=START + timedelta(hours=5))  # snapshot, then compact
    assert all(len(f) == 1 for kind in (PREDICTIONS, FEEDBACK) for f in log_files(log, kind).values())
    keys = [
        k.removeprefix(f"{prefix}/traffic/") for k in s3_server.objects(STATE_BUCKET) if k.startswith(prefix)
    ]
    assert "snapshot/snapshot.json" in keys and all(
        k.split("/")[0] in ("snapshot", *snapshot.KINDS) for k in keys
    )

    tail = seed(log, hours=range(3, 4), per_hour=200, parts=2, seed=9, tag="p")
    restarted = TrafficStore(log, CFG, wal=tmp_path / "node-b")
    state = restarted.rebuild()
    assert restarted.rebuilt["snapshot"] and restarted.rebuilt["files_read"] == 2 * 2
    assert summary(state.counts) == add(truth, tail) == summary(_full_rebuild(log))
    assert not (tmp_path / "traffic").exists()  # nothing of the log on this node's disk


def test_two_monitors_flushing_into_one_store_at_once_lose_and_double_nothing(s3_server, tmp_path):
    """A monitor Ray restarted while the old one still flushes (two processes, one log on the
    S3 server): every flush writes files of its own, and the rebuild counts each request once,
    including those both received (re-delivered to the new one)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.configs import make_config
    from tests.conftest import STATE_BUCKET
    from tests.helpers import prediction_record

    storage = {"state": f"s3://{STATE_BUCKET}/{tmp_path.name}", "catalog": s3_server.catalog()}
    log = traffic_log(make_config(tmp_path, storage=storage).storage)
    at = START + timedelta(minutes=5)

    def monitor(name: str, ids: range) -> int:
        store = TrafficStore(log, CFG, wal=tmp_path / name)
        for chunk in range(ids.start, ids.stop, 100):  # a flush a batch, as the actor's loop does
            store.add(PREDICTIONS, [prediction_record(f"r{i}", at=at) for i in range(chunk, chunk + 100)])
            store.flush()
        return len(ids)

    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(monitor, ["old", "new"], [range(0, 1000), range(600, 1600)]))
    assert sent == [1000, 1000] and len(log_files(log, PREDICTIONS)[hour_key(at)]) == 20
    counts = TrafficStore(log, CFG, wal=tmp_path / "third").rebuild().counts
    assert summary(counts)["e/champion"][0] == 1600  # 400 re-delivered, counted once


def _full_rebuild(root) -> ExperimentCounts:
    state = snapshot.MonitorState(
        ExperimentCounts(capacity=CFG.remembered_predictions, pending_capacity=CFG.pending_feedback)
    )
    snapshot.replay(root, state, keep=2 * CFG.window)
    return state.counts
