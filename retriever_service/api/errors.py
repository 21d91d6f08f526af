"""Every error the API returns is JSON ``{"error": <sentence>, "detail": <anything>}``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatir.errors import ChatIRError, IndexMismatchError, ModelNotAvailableError, ServiceUnavailableError
from retriever_service.errors import (
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceStartingError,
)

log = logging.getLogger(__name__)

_STATUS_OF: tuple[tuple[type[ChatIRError], int], ...] = (
    (NotFoundError, 404),
    (ForbiddenError, 403),
    (InvalidRequestError, 422),
    (PayloadTooLargeError, 413),
    (ServiceUnavailableError, 503),
    (ModelNotAvailableError, 503),
    (IndexMismatchError, 409),
)


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def field_name(loc: Sequence[Any]) -> str:
    """``("body", "dialog", "caption")`` -> ``"dialog.caption"`` (the request part is dropped)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_errors(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    detail = []
    for e in errors:
        kind, message = str(e.get("type", "")), str(e.get("msg", ""))
        if kind == "json_invalid":  # loc is ("body", <character position>)
            position = e.get("loc", ("body",))[-1]
            field, message = "body", f"{message} at character {position}"
        else:
            field = field_name(e.get("loc", ()))
        detail.append({"field": field, "message": message, "type": kind})
    return detail


async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = validation_errors(exc.errors())
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:5]) or "invalid request"
    return error_response(422, f"invalid request: {summary}", detail)


async def _http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    reason = HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else "error"
    detail = exc.detail if exc.detail != HTTPStatus(status).phrase else None
    if status == 413:
        detail = detail or "the request body is larger than this endpoint accepts"
    if status == 404 and detail is None:
        detail = f"no route {request.method} {request.url.path}"
    if status == 400 and detail == "There was an error parsing the body":
        # FastAPI's answer to a body it cannot parse at all (e.g. JSON nested thousands deep): the same 422 as
        # every other unreadable body, documented in the schema, instead of an undocumented 400
        return error_response(
            422,
            "invalid request: body: the request body cannot be parsed (malformed, or nested too deeply)",
            [{"field": "body", "message": "cannot be parsed", "type": "json_invalid"}],
        )
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 405:  # Starlette names only the first matching route's methods (GET, not DELETE)
        headers["Allow"] = ", ".join(_allowed_methods(request))
        detail = detail or f"{request.url.path} accepts {headers['Allow']}"
    return error_response(status, reason, detail, headers=headers or None)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app fully serves at this path."""
    from starlette.routing import Match

    def served(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)

    return [method for method in _METHODS if served(method)]


async def _chatir_handler(request: Request, exc: ChatIRError) -> JSONResponse:
    status = next((code for kind, code in _STATUS_OF if isinstance(exc, kind)), 400)
    detail: Any = None
    headers = None
    if isinstance(exc, InvalidRequestError) and exc.field:
        detail = [{"field": exc.field, "message": str(exc), "type": "value_error"}]
    elif isinstance(exc, ServiceUnavailableError):
        starting = isinstance(exc, ServiceStartingError)
        detail = {"state": "starting" if starting else "unavailable"}
        headers = {"Retry-After": "5"} if starting else None
    return error_response(status, str(exc), detail, headers=headers)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error", f"{type(exc).__name__} (see the service log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(ChatIRError, _chatir_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_handler)
