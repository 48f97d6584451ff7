"""Outcome producers: the systems of record whose outcomes steer the loop, each with its own tokens.

A caller of `/predict` can report whatever it likes about its own predictions, so outcomes are
taken only from named producers (`mlsys outcomes producer add NAME`), with a credential of
their own, separate from the admin token. Tokens are stored as SHA-256 digests in one JSON
document in the shared state store (`serving/producers.json` under the storage root, or on
`storage.state`); replicas re-read it, so adding, rotating (the old token stays valid for an
overlap) or revoking takes effect without a restart. Writers write over the version they read
(a conditional write), again over a newer one, so two commands never lose an edit.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from app.config import AppConfig
from app.data.schema import DataError
from app.data.state import LocalState, StateStore, state_store, update
from app.serving.auth import token_digest

log = logging.getLogger(__name__)
TOKEN_PREFIX = "mlsys-out-"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
REMOTE_REFRESH_S = 2.0  # an object store is read at most this often per replica


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
    """The producers' token digests, one document in the shared state store."""

    def __init__(self, store: StateStore, key: str, *, clock=time.time, refresh_s: float | None = None):
        self.store, self.key = store, key
        self.clock = clock
        # How stale a replica's copy may get: a local file is re-read on every check (a rotation
        # or revocation works at once); an object store's at most every REMOTE_REFRESH_S.
        self.refresh_s = (
            (0.0 if isinstance(store, LocalState) else REMOTE_REFRESH_S) if refresh_s is None else refresh_s
        )
        self._read_at: float | None = None
        self._version: str | None = None  # of the document the keys were parsed from
        self._keys: dict[str, list[Key]] = {}

    @property
    def location(self) -> str:
        return f"{self.store.location}/{self.key}"

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
        now = time.monotonic()
        if self._read_at is not None and now - self._read_at < self.refresh_s:
            return
        try:
            stored = self.store.read(self.key)
        except DataError as exc:  # the store unreachable for a moment: keep the last good keys
            log.error("%s; keeping the tokens read before", exc)
            return
        self._read_at = now
        if stored is None:
            self._version, self._keys = None, {}
            return
        if stored.version == self._version:
            return
        try:
            self._keys = _parse(stored.data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # keep the last good keys
            log.error("producers %s unreadable (%s); keeping the tokens read before", self.location, exc)
        self._version = stored.version

    # ------------------------------------------------------------ changes (the CLI)

    def add(self, name: str) -> str:
        """A new producer and its first token (shown once; only its digest is kept)."""
        if not NAME.match(name):
            raise ProducerError(f"producer name {name!r}: use lowercase letters, digits, '-' and '_'")
        token, now = new_token(), self.clock()

        def add_to(keys: dict[str, list[Key]]) -> None:
            if name in keys:
                raise ProducerError(f"producer {name!r} exists: rotate its token instead")
            keys[name] = [Key(token_digest(token), now)]

        self._edit(add_to)
        return token

    def rotate(self, name: str, *, overlap_s: float) -> str:
        """A new token for `name`; its current tokens stay valid for `overlap_s` seconds more."""
        token, now = new_token(), self.clock()
        until = now + overlap_s

        def rotate_in(keys: dict[str, list[Key]]) -> None:
            if name not in keys:
                raise ProducerError(f"no producer {name!r}")
            kept = [
                Key(k.sha256, k.created_at, until if k.expires_at is None else min(k.expires_at, until))
                for k in keys[name]
                if k.expires_at is None or k.expires_at > now
            ]
            keys[name] = [*kept, Key(token_digest(token), now)]

        self._edit(rotate_in)
        return token

    def token_for(self, name: str, *, overlap_s: float = 3600) -> str:
        """A new token for `name`, adding the producer if it is not there (the demo's own
        producer, and tests'): its earlier tokens keep working for `overlap_s`."""
        if name in self.producers():
            return self.rotate(name, overlap_s=overlap_s)
        return self.add(name)

    def revoke(self, name: str) -> None:
        """Every token of `name` stops working at once."""

        def drop(keys: dict[str, list[Key]]) -> None:
            if keys.pop(name, None) is None:
                raise ProducerError(f"no producer {name!r}")

        self._edit(drop)

    def _edit(self, edit: Callable[[dict[str, list[Key]]], None]) -> None:
        """Apply `edit` to the stored producers and write them back whole, over the version it
        read (again over a newer one when another command wrote first: no edit is lost)."""

        def change(data: bytes | None) -> bytes:
            keys = {} if data is None else _parse(data)
            edit(keys)
            blob = {name: [asdict(k) for k in ks] for name, ks in sorted(keys.items())}
            return json.dumps({"producers": blob}, indent=2).encode()

        update(self.store, self.key, change, attempts=32)
        self._read_at = None  # this process sees its own edit at once


def producer_store(cfg: AppConfig) -> ProducerStore:
    return ProducerStore(state_store(cfg.storage), cfg.storage.producers)


def _parse(data: bytes) -> dict[str, list[Key]]:
    data = json.loads(data)
    return {name: [Key(**k) for k in keys] for name, keys in data["producers"].items()}
