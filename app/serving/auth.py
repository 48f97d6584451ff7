"""Bearer tokens: the admin's, compared with the SHA-256 digest the replica holds, and the
outcome producers' (serving/producers.py).

The admin token itself never reaches a replica, the dashboard or the Serve config: `build_app`
hands over its digest only. A producer's token is an outcomes credential only: it cannot act
as admin, and the admin token cannot report outcomes.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.serving.producers import ProducerStore


class AuthError(Exception):
    """A call refused for its credential: HTTP status, message and headers for the client."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_admin(authorization: str | None, *, required: bool, token_sha256: str | None) -> None:
    """AuthError (401 no token, 403 wrong or admin disabled) unless the header holds the token."""
    if not required:
        return
    if not token_sha256:
        raise AuthError(403, "admin routes are disabled: set MLSYS_ADMIN_TOKEN before starting the service")
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError(
            401, "admin route: send Authorization: Bearer <MLSYS_ADMIN_TOKEN>", {"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(token_digest(authorization.removeprefix("Bearer ")), token_sha256):
        raise AuthError(403, "admin route: wrong token")


def check_producer(authorization: str | None, producers: ProducerStore) -> str:
    """The producer whose token the header holds; AuthError (401 none, 403 unknown, expired
    or revoked) otherwise."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError(
            401,
            "outcomes come from a producer: send Authorization: Bearer <producer token> "
            "(mlsys outcomes producer add NAME)",
            {"WWW-Authenticate": "Bearer"},
        )
    producer = producers.producer_for(authorization.removeprefix("Bearer "))
    if producer is None:
        raise AuthError(403, "not a current outcome producer's token (unknown, rotated out or revoked)")
    return producer
