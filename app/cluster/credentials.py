"""Secrets this process may hold that no Ray process or job should inherit."""

from __future__ import annotations

import os

# Ray's processes (and so every Ray Job) get the environment of the process that starts them,
# and the dashboard shows job environments.
ADMIN_TOKEN_ENV = "MLSYS_ADMIN_TOKEN"
SECRET_ENV = (ADMIN_TOKEN_ENV,)
_withheld: dict[str, str] = {}


def withhold_secrets() -> None:
    """Move secrets out of this process's environment (kept in memory) before Ray starts."""
    for name in SECRET_ENV:
        if name in os.environ:
            _withheld[name] = os.environ.pop(name)


def secret(name: str) -> str | None:
    """A secret from this process's environment, also after `withhold_secrets`."""
    return os.environ.get(name) or _withheld.get(name)
