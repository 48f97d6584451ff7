"""Write-ahead log: the records the monitor has accepted but not yet written as parquet.

The monitor answers a replica's batch (and a user's feedback) before its next flush writes
the log's parquet part, up to a second later. Each accepted record is first appended here as a
JSON line, one file per kind; the flush that persists them empties the file. A monitor that is
killed in between loses nothing: its restart reads the lines back (`recover`) and accepts them
again, and records it had already counted from the log are recognised by request id.

The folder is on the monitor's own disk (the parquet log may be on an object store). Lines
are handed to the OS on every append, not fsynced: they survive the process, which is what an
actor restart on the same node needs; a monitor that Ray places on another node starts
without them (at most a second's records). A torn last line (a kill mid-write) is
skipped with a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _json_value(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime):  # pandas Timestamps too
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class WriteAheadLog:
    def __init__(self, folder: Path, kinds: tuple[str, ...]):
        self.folder = folder
        self.paths = {kind: folder / f"{kind}.jsonl" for kind in kinds}
        self.files: dict = {}

    def _file(self, kind: str):
        if kind not in self.files:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.files[kind] = open(self.paths[kind], "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        return self.files[kind]

    def append(self, kind: str, records: list[dict]) -> None:
        if not records:
            return
        f = self._file(kind)
        f.write("".join(json.dumps(r, default=_json_value) + "\n" for r in records))
        f.flush()

    def clear(self, kind: str) -> None:
        """Forget every line of `kind`: its records are in the parquet log now."""
        if kind in self.files:
            f = self.files[kind]
            f.seek(0)
            f.truncate()
        elif self.paths[kind].exists():
            self.paths[kind].write_text("")

    def recover(self) -> dict[str, list[dict]]:
        """Every record still in the log, by kind (timestamps as ISO strings)."""
        found: dict[str, list[dict]] = {}
        for kind, path in self.paths.items():
            records = []
            if path.exists():
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        log.warning("skipping a torn line %d of %s", n, path)
            found[kind] = records
        return found

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()
