"""A request-body limit for every route, chunked bodies included.

uvicorn sets none. Bytes are counted as the app reads them; past the limit (or at the
first read, when Content-Length already says more) the read raises a 413
``HTTPException``, which FastAPI passes through its form and JSON parsing untouched and
answers as JSON. Routes that never read their body are not affected. The ingest routes
read theirs themselves (``handlers.read_body``) and answer the same 413 with their own
metrics.

Starlette's own ``RequestBodyLimitMiddleware`` (FastAPI's ``max_body_size``) is not used:
it replaces the answer to an oversized Content-Length with a plain-text one.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"request body larger than {limit} bytes",
        # The rest of the body is not read: the connection cannot be reused.
        headers={"Connection": "close"},
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = Headers(scope=scope).get("content-length") or ""
        declared_too_large = declared.isdigit() and int(declared) > limit
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            if declared_too_large:
                raise too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, receive_with_limit, send)
