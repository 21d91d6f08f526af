"""Request body limits: a small JSON ceiling everywhere, ``settings.max_upload_mb`` for uploads.

Declared sizes (Content-Length) are refused before reading; streamed bodies are counted as they
arrive and cut off at the limit. Either way the client gets a JSON 413.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retriever_service.api.errors import error_response

MAX_JSON_BYTES = 2 * 1024 * 1024
"""Largest body of an ordinary request (a search with 10K excluded ids and 50 long rounds fits)."""

UPLOAD_PATHS = frozenset({"/v1/index"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_json_bytes: int = MAX_JSON_BYTES) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_json_bytes = max_json_bytes

    def limit_for(self, scope: Scope) -> int:
        return self.max_upload_bytes if scope["path"].rstrip("/") in UPLOAD_PATHS else self.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = error_response(413, "request too large", f"the request body exceeds {limit} bytes")
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
