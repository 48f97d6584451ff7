"""The promotion ledger: every change of who serves, with who made it and why.

One entry per alias change (a registration under an alias, a promotion, a rollback, a rollout
step, a rejection), stored as a tag on the model version it concerns (`ledger.<time>`), so the
MLflow UI shows a version's history on its page and `mlsys models history` lists them all in
order. Pure helpers here; `Registry.record` writes and `Registry.promotion_ledger` reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

REJECT = "reject"  # the event of a version rejected (refused by a gate, or rolled back)
TAG_PREFIX = "ledger."
MAX_TAG_CHARS = 5000  # MLflow's limit on a model version tag's value

# Who made a change.
CLI, ADMIN_ROUTE, CONTROLLER, TRAINING, ONLINE = (
    "cli",
    "admin route",
    "rollout controller",
    "training",
    "online learning",
)


@dataclass(frozen=True)
class Entry:
    at: str  # ISO time, UTC
    event: str  # registered, promote, rollback, step, reject
    by: str
    version: int  # the version the entry is about (and is stored on)
    from_version: int | None = None  # the champion (or share) it replaced, where there is one
    alias: str | None = None
    reason: str = ""
    evidence: dict = field(default_factory=dict)

    def tag(self) -> tuple[str, str]:
        """(key, value) of the version tag; evidence is dropped before the value is cut."""
        key = TAG_PREFIX + datetime.fromisoformat(self.at).strftime("%Y%m%dT%H%M%S%f")
        value = json.dumps(asdict(self), default=str, separators=(",", ":"))
        if len(value) > MAX_TAG_CHARS:
            value = json.dumps({**asdict(self), "evidence": {"dropped": "over the tag size"}}, default=str)
        return key, value[:MAX_TAG_CHARS]


def entry(event: str, *, by: str, version: int, **fields) -> Entry:
    return Entry(at=datetime.now(timezone.utc).isoformat(), event=event, by=by, version=version, **fields)


def parse(tags: dict[str, str]) -> list[Entry]:
    """The entries among a version's tags (unreadable ones skipped)."""
    out = []
    for key, value in tags.items():
        if key.startswith(TAG_PREFIX):
            try:
                out.append(Entry(**json.loads(value)))
            except (ValueError, TypeError):
                continue
    return out
