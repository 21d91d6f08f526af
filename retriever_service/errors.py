"""What the retriever service raises, and the messages for a store another process holds.

The HTTP status of each error is :mod:`retriever_service.api.errors`'s business; here they are plain
:class:`~chatir.errors.ChatIRError` subclasses, so the CLI prints them without a traceback as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatir.errors import ChatIRError, ServiceUnavailableError

if TYPE_CHECKING:
    from chatir.settings import Settings


class NotFoundError(ChatIRError):
    """An image, file or job that does not exist (HTTP 404)."""


class InvalidRequestError(ChatIRError):
    """A request that is well-formed but cannot be honoured (HTTP 422); ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ForbiddenError(ChatIRError):
    """A request outside what the service is configured to allow (HTTP 403)."""


class PayloadTooLargeError(ChatIRError):
    """An upload over ``settings.max_upload_mb`` (HTTP 413)."""


class ServiceStartingError(ServiceUnavailableError):
    """The service is still loading its model (HTTP 503 with ``detail.state == "starting"``, ``Retry-After``)."""


class JobCancelledError(ChatIRError):
    """An indexing job stopped because the service is shutting down."""


class StoreLockedError(ServiceUnavailableError):
    """The embedded store is held by another process (normally a running ``chatir serve``)."""


def store_description(settings: Settings) -> str:
    """Where the vectors live, for people: the server URL or the embedded folder."""
    if settings.qdrant_url:
        return f"Qdrant server at {settings.qdrant_url}"
    return f"embedded store at {settings.qdrant_path}"


def store_locked_message(settings: Settings) -> str:
    """Who holds the store and what to do, from its run file when the holder wrote one."""
    from chatir import runfile

    held = runfile.holder(settings)
    if held is None:
        return (
            f"The {store_description(settings)} is in use by another process (normally a running `chatir serve` "
            "or `chatir demo`). Stop that process, or use its HTTP API (CHATIR_SERVICE_URL)."
        )
    return (
        f"The {store_description(settings)} is in use by `chatir {held.command}` (pid {held.pid}), which serves "
        f"it at {held.url}. Use that service (CHATIR_SERVICE_URL={held.url}), or stop it first."
    )


def is_store_lock_error(error: BaseException) -> bool:
    """True for the embedded store's "already accessed by another instance" (the wording of qdrant-client's local
    mode, kept by :class:`~retriever_service.index.edge_store.EdgeStore`) and similar lock errors."""
    text = str(error).lower()
    return "already accessed" in text or ("lock" in text and "storage" in text)


__all__ = [
    "ForbiddenError",
    "InvalidRequestError",
    "JobCancelledError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServiceStartingError",
    "StoreLockedError",
    "is_store_lock_error",
    "store_description",
    "store_locked_message",
]
