"""Optional bearer-token auth of the ``/v1`` routes (on when ``CHATIR_API_KEY`` is set).

Enforced by an ASGI middleware, before any body is read, so an unauthenticated client can neither
upload nor probe; health endpoints and the OpenAPI schema stay open. :data:`bearer_scheme` only
documents the scheme in OpenAPI.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from retriever_service.api.errors import error_response

PROTECTED_PREFIX = "/v1/"

bearer_scheme = HTTPBearer(
    auto_error=False, description="The service's CHATIR_API_KEY (only when it sets one)."
)


def token_matches(given: str, expected: SecretStr) -> bool:
    """Constant-time comparison of a presented token with the configured key."""
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


class BearerAuthMiddleware:
    """401 (JSON) for ``/v1/...`` requests without ``Authorization: Bearer <api_key>``."""

    def __init__(self, app: ASGIApp, api_key: SecretStr | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is None or scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            problem = "missing bearer token (send 'Authorization: Bearer <CHATIR_API_KEY>')"
        elif scheme.lower() != "bearer" or not token_matches(token.strip(), self.api_key):
            problem = "invalid bearer token"
        else:
            await self.app(scope, receive, send)
            return
        response = error_response(401, "unauthorized", problem, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
