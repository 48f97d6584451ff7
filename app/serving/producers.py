"""Outcome producers: the systems of record whose outcomes steer the loop, each with its own tokens.

A caller of `/predict` can report whatever it likes about its own predictions, so outcomes are
taken only from named producers (`mlsys outcomes producer add NAME`), with a credential of
their own, separate from the admin token. Tokens are stored as SHA-256 digests in one JSON file
under the storage root (`storage.producers`); replicas re-read it when it changes, so adding,
rotating (the old token stays valid for an overlap) or revoking takes effect without a restart.
Writers hold a file lock and replace the file atomically, so two commands never lose an edit.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from app.files import atomic_write_text
from app.serving.auth import token_digest

log = logging.getLogger(__name__)
TOKEN_PREFIX = "mlsys-out-"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ProducerError(ValueError):
    """A producer command that cannot be done (unknown or duplicate name, a bad name)."""


@dataclass(frozen=True)
class Key:
    sha256: str
    created_at: float
    expires_at: float | None = None  # set when rotated: valid until then


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ProducerStore:
    def __init__(self, path: Path, *, clock=time.time):
        self.path = Path(path)
        self.clock = clock
        self._seen: tuple[int, int, int] | None = None  # the file's (inode, mtime, size) when read
        self._keys: dict[str, list[Key]] = {}

    # ------------------------------------------------------------ reading (replicas)

    def producer_for(self, token: str) -> str | None:
        """The producer a token belongs to, if it is one of its current keys."""
        self._reload()
        digest, now = token_digest(token), self.clock()
        for name, keys in self._keys.items():
            for key in keys:
                if hmac.compare_digest(key.sha256, digest) and (
                    key.expires_at is None or now < key.expires_at
                ):
                    return name
        return None

    def producers(self) -> dict[str, list[Key]]:
        self._reload()
        return dict(self._keys)

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._keys = None, {}
            return
        # The inode too: every write replaces the file, so a change shows even where mtimes
        # are coarse (a revoke and an add within the same second, on NFS).
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        try:
            self._keys = _parse(self.path.read_text())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # keep the last good keys
            log.error(
                "the producers file %s is unreadable (%s); keeping the tokens read before", self.path, exc
            )
        self._seen = seen

    # ------------------------------------------------------------ changes (the CLI)

    def add(self, name: str) -> str:
        """A new producer and its first token (shown once; only its digest is kept)."""
        if not NAME.match(name):
            raise ProducerError(f"producer name {name!r}: use lowercase letters, digits, '-' and '_'")
        with self._locked() as keys:
            if name in keys:
                raise ProducerError(f"producer {name!r} exists: rotate its token instead")
            token = new_token()
            keys[name] = [Key(token_digest(token), self.clock())]
        return token

    def rotate(self, name: str, *, overlap_s: float) -> str:
        """A new token for `name`; its current tokens stay valid for `overlap_s` seconds more."""
        with self._locked() as keys:
            if name not in keys:
                raise ProducerError(f"no producer {name!r}")
            now = self.clock()
            until = now + overlap_s
            kept = [
                Key(k.sha256, k.created_at, until if k.expires_at is None else min(k.expires_at, until))
                for k in keys[name]
                if k.expires_at is None or k.expires_at > now
            ]
            token = new_token()
            keys[name] = [*kept, Key(token_digest(token), now)]
        return token

    def token_for(self, name: str, *, overlap_s: float = 3600) -> str:
        """A new token for `name`, adding the producer if it is not there (the demo's own
        producer, and tests'): its earlier tokens keep working for `overlap_s`."""
        if name in self.producers():
            return self.rotate(name, overlap_s=overlap_s)
        return self.add(name)

    def revoke(self, name: str) -> None:
        """Every token of `name` stops working at once."""
        with self._locked() as keys:
            if keys.pop(name, None) is None:
                raise ProducerError(f"no producer {name!r}")

    @contextmanager
    def _locked(self) -> Iterator[dict[str, list[Key]]]:
        """The producers to edit in place; written back whole when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=30):
            keys = _parse(self.path.read_text()) if self.path.exists() else {}
            yield keys
            blob = {name: [asdict(k) for k in ks] for name, ks in sorted(keys.items())}
            atomic_write_text(self.path, json.dumps({"producers": blob}, indent=2))
            self.path.chmod(0o600)


def _parse(text: str) -> dict[str, list[Key]]:
    data = json.loads(text)
    return {name: [Key(**k) for k in keys] for name, keys in data["producers"].items()}
