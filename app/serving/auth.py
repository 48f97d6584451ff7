"""Admin authentication: a Bearer token compared with the SHA-256 digest the replica holds.

The token itself never reaches a replica, the dashboard or the Serve config: `build_app`
hands over its digest only.
"""

from __future__ import annotations

import hashlib
import hmac


class AdminError(Exception):
    """An admin call refused: HTTP status, message and headers for the client."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_admin(authorization: str | None, *, required: bool, token_sha256: str | None) -> None:
    """AdminError (401 no token, 403 wrong or admin disabled) unless the header holds the token."""
    if not required:
        return
    if not token_sha256:
        raise AdminError(403, "admin routes are disabled: set MLSYS_ADMIN_TOKEN before starting the service")
    if not authorization or not authorization.startswith("Bearer "):
        raise AdminError(
            401, "admin route: send Authorization: Bearer <MLSYS_ADMIN_TOKEN>", {"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(token_digest(authorization.removeprefix("Bearer ")), token_sha256):
        raise AdminError(403, "admin route: wrong token")
