"""Small shared state (experiment split, rollout and retrain state, feedback key, producers'
token digests): read with a version, written only over the version that was read.

Every node reaches the same store: files under `storage.root` by default, or an object store
when `storage.state` is an `s3://bucket/prefix` URI (the endpoint and credentials of
`storage.catalog`, else the usual AWS variables). A write names the version it replaces
(`None`: the key must not exist yet); when another writer got there first it raises
`StateConflict` and changes nothing, so two writers never silently overwrite each other.
On S3 that is a conditional PUT (`If-None-Match: *` to create, `If-Match: <etag>` to
replace); on a filesystem the compare and the atomic rename happen under an exclusive lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.config import StorageConfig
from app.data import tables
from app.data.schema import DataError
from app.files import atomic_write_bytes


class StateConflict(Exception):
    """The key changed (or appeared) since the version this writer read."""


@dataclass(frozen=True)
class Stored:
    data: bytes
    version: str


class StateStore(Protocol):
    location: str

    def read(self, key: str) -> Stored | None: ...

    def write(self, key: str, data: bytes, *, replaces: str | None) -> str: ...


class LocalState:
    """Files under a folder; the version is the content's digest."""

    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)

    def read(self, key: str) -> Stored | None:
        try:
            data = (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        return Stored(data, _digest(data))

    def write(self, key: str, data: bytes, *, replaces: str | None) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            current = self.read(key)
            if (current and current.version) != replaces:
                raise StateConflict(f"{path} changed since it was read")
            atomic_write_bytes(path, data, mode=0o600)  # the service's own: a key among them
        return _digest(data)


class S3State:
    """Objects under `s3://bucket/prefix`; the version is the object's ETag."""

    def __init__(self, uri: str, properties: dict[str, str]):
        try:
            import boto3
        except ImportError as exc:
            raise DataError(f"storage.state {uri} needs boto3: pip install 'mlsys[objectstore]'") from exc
        self.location = uri
        self.bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")
        self.bucket_seen = False

        def prop(name: str) -> str | None:
            return properties.get(f"s3.{name}") or properties.get(f"client.{name}")

        self.client = boto3.client(
            "s3",
            endpoint_url=properties.get("s3.endpoint"),  # None: boto3's own (AWS_ENDPOINT_URL…)
            region_name=prop("region"),
            aws_access_key_id=prop("access-key-id"),
            aws_secret_access_key=prop("secret-access-key"),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _check_bucket(self) -> None:
        """Once: the bucket must exist (some S3 servers would make one on the first write)."""
        if self.bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            missing = code in ("404", "NoSuchBucket")
            raise _unusable(
                self.location, RuntimeError(f"no bucket {self.bucket!r}") if missing else exc
            ) from exc
        self.bucket_seen = True

    def read(self, key: str) -> Stored | None:
        self._check_bucket()
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        except Exception as exc:
            raise _unusable(self.location, exc) from exc
        return Stored(answer["Body"].read(), answer["ETag"])

    def write(self, key: str, data: bytes, *, replaces: str | None) -> str:
        self._check_bucket()
        condition = {"IfNoneMatch": "*"} if replaces is None else {"IfMatch": replaces}
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                raise StateConflict(f"{self.location}/{key} changed since it was read") from exc
            raise _unusable(self.location, exc) from exc
        return answer["ETag"]


def state_store(storage: StorageConfig) -> StateStore:
    if storage.state.startswith("s3://"):
        return S3State(storage.state, tables.catalog_properties(storage))
    return LocalState(storage.path())


def update(store: StateStore, key: str, change: Callable[[bytes | None], bytes], attempts: int = 8) -> Stored:
    """Read, change and write back, again over the newer version when another writer got
    there first: `change` sees every write before its own, none is lost."""
    for _ in range(attempts):
        current = store.read(key)
        data = change(None if current is None else current.data)
        try:
            return Stored(data, store.write(key, data, replaces=None if current is None else current.version))
        except StateConflict:
            continue
    raise StateConflict(f"{where(store, key)}: {attempts} writers got there first, one after another")


def put(store: StateStore, key: str, data: bytes) -> Stored:
    """Write `data` whatever the key held (a report, a saved setting): the last writer wins,
    deliberately, and the write is still one atomic replace."""
    return update(store, key, lambda _: data)


def put_json(store: StateStore, key: str, value) -> Stored:
    """`put` of a JSON document (a report, a saved setting, a mark), readable as a file."""
    return put(store, key, json.dumps(value, indent=2, default=str).encode())


def where(store: StateStore, key: str) -> str:
    """The key as a location a message can name."""
    return f"{store.location}/{key}"


def create_once(store: StateStore, key: str, make: Callable[[], bytes]) -> bytes:
    """The key's data, made and stored by the first caller; later callers get the first's."""
    current = store.read(key)
    if current is not None:
        return current.data
    with suppress(StateConflict):  # another node made it first: theirs wins
        store.write(key, make(), replaces=None)
    return store.read(key).data


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _unusable(location: str, exc: Exception) -> DataError:
    return DataError(f"the state store {location} is not usable: {str(exc).splitlines()[0]}")
