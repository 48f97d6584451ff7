"""Feedback receipts: `/predict` returns one per request id, `/feedback` must echo it.

A receipt is `<issued unix seconds>.<HMAC-SHA256(key, request_id|issued)>`, so only the client
that received a prediction can report its outcome, and nobody can invent request ids or
replay one past its age limit. The key is 32 random bytes in the shared state store
(`serving/feedback.key`: mode 0600 under the storage root, or an object on `storage.state`),
created once by whichever replica starts first (a conditional write) and read by all others.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from app.data.state import StateStore, create_once

KEY_BYTES = 32
MAC_CHARS = 32  # 128 bits of the MAC


class ReceiptError(ValueError):
    """Feedback whose receipt is missing, forged or too old; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def load_key(store: StateStore, name: str) -> bytes:
    """The key, created if there is none yet; the first replica to create it wins, on any node."""
    key = create_once(store, name, lambda: secrets.token_bytes(KEY_BYTES))
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"feedback key {store.location}/{name} is damaged ({len(key)} bytes): delete it to make a new one"
        )
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
