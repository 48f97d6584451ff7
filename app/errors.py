"""One line for an exception, as a user reads it in a message or a log line."""

from __future__ import annotations

import re

# "pkg.SomeError: message", the line a wrapped traceback names the user code's error on
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Invalid): (.+)$")


def first_line(exc: BaseException) -> str:
    """The exception's first line; its type's name when it has no message."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def cause_line(exc: BaseException) -> str:
    """The useful line of an exception that may come wrapped in Ray's task traceback: the
    user code's own `SomeError: message` (Ray's wrapper ends with a retry hint instead)."""
    for line in str(exc).splitlines():
        m = _ERROR_LINE.match(line)
        if m and not line.startswith("ray."):
            return m.group(1)
    cause = exc
    while getattr(cause, "cause", None) is not None and cause is not cause.cause:
        cause = cause.cause
    text = str(cause).strip()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "Traceback"))]
    return lines[-1] if lines else type(cause).__name__
