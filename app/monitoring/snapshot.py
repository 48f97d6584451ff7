"""The monitor's snapshot: its counts saved with the list of log files they cover, and the
rebuild that reads the snapshot plus the files it does not cover - never the whole history.

A snapshot is a folder `<traffic>/snapshot/` (it describes that log and moves with it): three
parquet files (remembered predictions, pending feedback, the recent records the drift windows
are replayed from) written under fresh names, then `snapshot.json` - counts, history, counters
and the covered file names - written last, whole, so a crash leaves the old snapshot or the
new one, never a mix. A file named in `covered` may not exist yet: the monitor names a
compaction's output there before writing it, so a crash between writing the compacted file and
deleting its inputs leaves both covered and neither counted twice. An unreadable snapshot is
treated as absent (one warning): the rebuild then reads every file the retention kept.

The rebuild streams the log hour by hour (predictions, then that hour's feedback), one file at
a time: memory is the counts' own bound plus one file, whatever the log's length.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from app.data.shared_files import as_files
from app.monitoring import counts_state
from app.monitoring.counts import PREDICTION_FIELDS, ExperimentCounts
from app.monitoring.records import UNATTRIBUTED
from app.monitoring.traffic import (
    FEEDBACK,
    PREDICTIONS,
    UNREADABLE,
    Root,
    file_name,
    log_files,
    quarantine,
    read_part,
    store_failed,
)

log = logging.getLogger(__name__)
SNAPSHOT, MANIFEST = "snapshot", "snapshot.json"
FORMAT = 1
KINDS = (PREDICTIONS, FEEDBACK)
NEEDED = {PREDICTIONS: set(PREDICTION_FIELDS), FEEDBACK: {"request_id", "label"}}
BATCH = 50_000  # rows converted to Python at a time while replaying a file

Files = dict[str, dict[str, set[str]]]  # kind -> hour key -> file names


@dataclass
class MonitorState:
    """What a restarted monitor needs to answer as if it had never stopped."""

    counts: ExperimentCounts
    recent: dict[str, deque] = field(default_factory=dict)  # variant -> latest ok records
    history: list[dict] = field(default_factory=list)  # completed windows' headlines
    covered: Files = field(default_factory=dict)  # log files whose records are in `counts`
    counters: dict[str, int] = field(default_factory=dict)  # housekeeping: unreadable, expired, …


@dataclass
class Replay:
    files: Files  # every log file present (read now, or covered by the snapshot)
    files_read: int = 0
    records_read: int = 0
    unreadable: int = 0


def empty_files() -> Files:
    return {kind: {} for kind in KINDS}


def save(root: Root, state: MonitorState) -> str:
    """Write the snapshot; returns the manifest's location."""
    folder = as_files(root).under(SNAPSHOT)
    tag = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    counts = counts_state.to_state(state.counts)
    tables = {
        "predictions": pa.table(counts.pop("predictions")),
        "pending": pa.table(counts.pop("pending")),
        "recent": _recent_table(state.recent),
    }
    names = {part: f"{part}-{tag}.parquet" for part in tables}
    for part, table in tables.items():
        folder.write_parquet(folder.uri(names[part]), table)
    hours = [h for kind in state.covered.values() for h in kind]
    manifest = {
        "format": FORMAT,
        "written_at": time.time(),
        "through_hour": max(hours, default=None),  # for people; the rebuild uses `covered`
        **counts,
        "history": state.history,
        "counters": state.counters,
        "covered": {k: {h: sorted(n) for h, n in hs.items()} for k, hs in state.covered.items()},
        "files": names,
    }
    path = folder.write_bytes(folder.uri(MANIFEST), json.dumps(manifest).encode())
    for stale in folder.names(folder.location):  # an earlier snapshot's data
        if stale.endswith(".parquet") and stale not in names.values():
            folder.delete(folder.uri(stale))
    return path


def _recent_table(recent: dict[str, deque]) -> pa.Table:
    records = [rec for records in recent.values() for rec in records]
    try:
        return pa.Table.from_pandas(pd.DataFrame.from_records(records), preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:  # a column of mixed types
        # The counts matter more than the windows: a restart then starts its windows empty.
        log.warning("monitor snapshot without its recent records: %s", exc)
        return pa.table({})


def load(root: Root, *, keep: int, capacity: int, pending_capacity: int) -> MonitorState | None:
    """The saved snapshot, or None when there is none or it cannot be read (one warning)."""
    folder = as_files(root).under(SNAPSHOT)
    path = current = folder.uri(MANIFEST)
    try:
        data = folder.read_bytes(path)
        if data is None:
            return None
        manifest = json.loads(data)
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT}")
        tables = {}
        for part, name in manifest["files"].items():
            current = folder.uri(name)
            tables[part] = folder.read_table(current)
        current = path
        counts = counts_state.from_state(
            {
                "stats": manifest["stats"],
                "predictions": tables["predictions"].to_pydict(),
                "pending": tables["pending"].to_pydict(),
                "pending_dropped": manifest["pending_dropped"],
                "per_key": manifest.get("per_key"),  # snapshots from before the per-key cap lack it
            },
            capacity=capacity,
            pending_capacity=pending_capacity,
        )
        recent: dict[str, deque] = {}
        for rec in tables["recent"].to_pandas().to_dict("records"):
            recent.setdefault(rec["variant"], deque(maxlen=keep)).append(rec)
        covered = {k: {h: set(n) for h, n in hs.items()} for k, hs in manifest["covered"].items()}
        state = MonitorState(counts, recent, list(manifest["history"]), covered, dict(manifest["counters"]))
    except (*UNREADABLE, KeyError, TypeError) as exc:
        if store_failed(folder, exc):  # the store, not the snapshot: never rebuilt over it
            raise
        log.warning(
            "monitor snapshot file %s is unreadable (%s): rebuilding from the traffic log", current, exc
        )
        return None
    return state


def replay(root: Root, state: MonitorState, *, keep: int) -> Replay:
    """Count every log file the snapshot does not cover into `state` (hour by hour)."""
    present = {kind: log_files(root, kind) for kind in KINDS}
    result = Replay(files=empty_files())
    tails: dict[str, list[pd.DataFrame]] = {}  # variant -> the newest ok records read
    for hour in sorted(set(present[PREDICTIONS]) | set(present[FEEDBACK])):
        for kind in KINDS:
            paths = present[kind].get(hour, [])
            if not paths:
                continue
            result.files[kind][hour] = {file_name(p) for p in paths}
            done = state.covered.get(kind, {}).get(hour, set())
            seen: set[str] = set()  # exact de-duplication within an hour, beyond the counts' memory
            for path in paths:
                if file_name(path) in done:
                    continue
                table = read_part(root, path)
                if table is not None and (missing := NEEDED[kind] - set(table.column_names)):
                    log.warning("skipping traffic file %s: no column %s", path, ", ".join(sorted(missing)))
                    table = None
                if table is None:  # counted once: moved out of the log
                    quarantine(root, path)
                    result.files[kind][hour].discard(file_name(path))
                    result.unreadable += 1
                    continue
                result.files_read += 1
                result.records_read += table.num_rows
                for batch in table.to_batches(max_chunksize=BATCH):
                    frame = batch.to_pandas()
                    if kind == PREDICTIONS:
                        _count_predictions(frame, state.counts, seen, tails, keep)
                    else:
                        _count_feedback(state.counts, frame, seen)
    for variant, frames in tails.items():
        recent = state.recent.setdefault(variant, deque(maxlen=keep))
        recent.extend(pd.concat(frames).tail(keep).to_dict("records"))
    return result


def _count_predictions(
    frame: pd.DataFrame, counts: ExperimentCounts, seen: set[str], tails: dict, keep: int
) -> None:
    new = []
    keys = frame["key"].tolist() if "key" in frame else [None] * len(frame)  # for the per-key cap
    for *values, key in zip(*(frame[c].tolist() for c in PREDICTION_FIELDS), keys, strict=True):
        fresh = values[0] not in seen
        seen.add(values[0])
        new.append(fresh and counts.count_prediction(*values, key=key))
    ok = frame[pd.Series(new, index=frame.index) & (frame["status"] == "ok")]
    for variant, part in ok.groupby("variant", sort=False):
        frames = tails.setdefault(variant, [])  # kept as frames: only the last `keep` become dicts
        frames.append(part.tail(keep))
        while sum(len(f) for f in frames[1:]) >= keep:
            frames.pop(0)


def _count_feedback(counts: ExperimentCounts, frame: pd.DataFrame, seen: set[str]) -> None:
    n = len(frame)  # files written before outcomes named their producer have no column
    producers = frame["producer"].fillna(UNATTRIBUTED).tolist() if "producer" in frame else [UNATTRIBUTED] * n
    rows = zip(frame["request_id"].tolist(), frame["label"].tolist(), producers, strict=True)
    for rid, label, producer in rows:
        if rid not in seen:
            seen.add(rid)
            counts.add_feedback(rid, int(label), producer)
