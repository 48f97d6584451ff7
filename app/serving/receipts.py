"""Feedback receipts: `/predict` returns one per request id, `/feedback` must echo it.

A receipt is `<issued unix seconds>.<HMAC-SHA256(key, request_id|issued)>`, so only the client
that received a prediction can report its outcome, and nobody can invent request ids or
replay one past its age limit. The key is 32 random bytes in the storage root
(`serving/feedback.key`, mode 0600), created once by whichever replica starts first and read
by all the others (the storage root is shared by every node).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

KEY_BYTES = 32
MAC_CHARS = 32  # 128 bits of the MAC


class ReceiptError(ValueError):
    """Feedback whose receipt is missing, forged or too old; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def load_key(path: Path) -> bytes:
    """The key, created (atomically, never overwritten) if there is none yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another replica created it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"feedback key {path} is damaged ({len(key)} bytes): delete it to make a new one")
    return key


def _mac(key: bytes, request_id: str, issued: int) -> str:
    return hmac.new(key, f"{request_id}|{issued}".encode(), hashlib.sha256).hexdigest()[:MAC_CHARS]


def issue(key: bytes, request_id: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(key, request_id, issued)}"


def verify(
    key: bytes, request_id: str, receipt: str | None, *, max_age_s: float, now: float | None = None
) -> float:
    """The receipt's issue time; ReceiptError (403 missing or forged, 404 expired) otherwise."""
    if not receipt:
        raise ReceiptError(403, "feedback_token is missing: echo the one /predict returned with the request")
    issued_text, _, mac = receipt.partition(".")
    try:
        genuine = hmac.compare_digest(mac.encode(), _mac(key, request_id, int(issued_text)).encode())
    except (ValueError, UnicodeEncodeError):  # not a receipt at all
        genuine = False
    if not genuine:
        raise ReceiptError(403, "feedback_token does not belong to this request_id")
    age = (time.time() if now is None else now) - int(issued_text)
    if age > max_age_s:
        raise ReceiptError(404, f"request_id has expired: predicted {age / 86400:.1f} days ago")
    return float(issued_text)
