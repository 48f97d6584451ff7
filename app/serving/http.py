"""HTTP plumbing shared by the routes: a body-size limit and JSON errors that name the field.

Every refused request gets a 4xx JSON body `{"error": ..., "field": ...}` (validation
errors list each field), so a client always learns what to fix.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse bodies over `max_bytes` with 413, by Content-Length or while reading a stream."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"error": f"request body over {self.max_bytes} bytes", "field": "body"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


_UNION_TAGS = {"float", "int", "str", "bool", "none", "list", "dict", "datetime"}


def _field(loc: tuple) -> str:
    # FastAPI prefixes "body"; pydantic adds a union member's type to the path ("age.float").
    parts = [str(p) for p in (loc[1:] if loc[:1] == ("body",) else loc)]
    kept = [
        p
        for p in parts
        if p not in _UNION_TAGS and not p.startswith(("function-", "constrained-")) and "[" not in p
    ]
    return ".".join(kept) or "body"


async def validation_error_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    details, seen = [], set()
    for err in exc.errors():
        reason = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            reason = f"malformed JSON: {err.get('ctx', {}).get('error', reason)}"
        field = _field(tuple(err.get("loc", ())))
        if field not in seen:  # a union reports once per member; the first says enough
            seen.add(field)
            details.append({"field": field, "reason": reason})
    first = details[0] if details else {"field": "body", "reason": "invalid request"}
    return JSONResponse(
        {"error": f"{first['field']}: {first['reason']}", "field": first["field"], "details": details},
        status_code=422,
    )
