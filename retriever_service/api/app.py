"""``create_app``: the FastAPI application of the retriever service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chatir.settings import Settings, get_settings
from retriever_service.api.errors import install_error_handlers
from retriever_service.api.limits import BodySizeLimitMiddleware
from retriever_service.api.routes import health, v1
from retriever_service.api.security import BearerAuthMiddleware
from retriever_service.api.state import ServiceHolder
from retriever_service.service import RetrieverService

DESCRIPTION = """\
Dialog encoder and image index of ChatIR for Slack.

* `POST /v1/search` embeds a dialog (caption + question/answer rounds) and returns the best images.
  Each hit's `thumbnail_url` is **relative to the service** (`/v1/images/{id}/thumbnail`): join it
  with the base URL you called, and send the same bearer token.
* When the service sets `CHATIR_API_KEY`, every `/v1` route needs `Authorization: Bearer <key>`;
  `/healthz`, `/readyz` and this schema stay open.
* Every error is JSON `{"error": "...", "detail": ...}`.
"""


def create_app(
    settings: Settings | None = None,
    service: RetrieverService | None = None,
    *,
    announce_url: str | None = None,
    on_load_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    """The app. Without ``service`` it loads the model and opens the index in the background at start-up
    (``/readyz`` answers 503 until then) and closes them at shutdown; an injected service stays the
    caller's to close. ``announce_url``: once loaded, write the store's run file (:mod:`chatir.runfile`) with
    this URL; ``on_load_failure``: called with the reason when the model or the store cannot be opened."""
    settings = settings or (service.settings if service is not None else get_settings())
    holder = ServiceHolder(settings, service, announce_url=announce_url, on_load_failure=on_load_failure)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.start_loading()
        try:
            yield
        finally:
            holder.close()

    app = FastAPI(
        title="ChatIR retriever service",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.chatir = holder
    install_error_handlers(app)
    # added last = outermost: auth runs before the size check, so strangers cannot make us read bodies
    app.add_middleware(BodySizeLimitMiddleware, max_upload_bytes=settings.max_upload_mb * 1024 * 1024)
    app.add_middleware(BearerAuthMiddleware, api_key=settings.api_key)
    app.include_router(health)
    app.include_router(v1)
    return app
