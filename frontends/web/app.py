"""The web chat's FastAPI app: a JSON API over the conversation engine plus the static page.

The page (static/) is plain HTML, CSS and JavaScript served by this app: no CDN, no build step, usable
offline and on a phone-width screen. Images are proxied from the retriever service, so the browser only
ever talks to this app.

Conversation ids of this app are 32 hex characters handed out by ``POST /api/conversations``; the engine
stores them as ``web:<id>``, so a browser can never read or drive a Slack or terminal conversation. Every
search of the app runs in the ``scope`` given by the code that creates it; nothing a visitor sends widens it.
The image proxy serves only images the app has shown (matches and demo targets), so an image id learnt
elsewhere does not open an image outside the scope. Every error is JSON ``{"error": "<a sentence for people>",
"detail": ...}``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.engine import ConversationEngine, ConversationNotFoundError, TurnResult
from chatir.errors import ChatIRError, ServiceUnavailableError
from frontends.web.schemas import (
    AppInfo,
    ChooseIn,
    ConversationCreated,
    MessageIn,
    MoreIn,
    TargetView,
    TurnView,
)
from tools.client import RetrieverClient, RetrieverRequestError
from tools.scope import SearchScope

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
RANK_LIMIT = 100
"""Ranks of the demo target are computed among the best ``RANK_LIMIT`` images (the service's largest k)."""
LARGEST_RENDERING = 2048
"""Longest side of the JPEG shown for an original browsers cannot display (HEIC, SVG, PDF)."""
MAX_TARGETS = 10_000
MAX_VISIBLE = 100_000
"""Image ids this app has shown (the only ones its image proxy serves), most recent kept."""
ID_PREFIX = "web:"
_CID = re.compile(r"^[0-9a-f]{32}$")

TargetPicker = Callable[[], str]
"""Returns the id of a random gallery image (the demo's "show me a target")."""


class WebError(ChatIRError):
    """A request the web chat refuses; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _status_of(error: ChatIRError) -> int:
    if isinstance(error, WebError):
        return error.status
    if isinstance(error, ConversationNotFoundError):
        return 404
    if isinstance(error, ServiceUnavailableError):
        return 503
    if isinstance(error, RetrieverRequestError):
        return error.status_code if 400 <= error.status_code < 500 else 502
    return 400


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body",)) or "request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts) if parts else "invalid request"


# --- errors: always JSON with a sentence for people ----------------------------------------------------
async def _chatir_error(request: Request, error: ChatIRError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=_status_of(error))


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in error.errors()]
    return JSONResponse({"error": _validation_message(error), "detail": detail}, status_code=422)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("web chat: unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "something went wrong on our side; please try again"}, status_code=500)


_ERROR_HANDLERS: tuple[tuple[type[Exception], Callable[..., Any]], ...] = (
    (ChatIRError, _chatir_error),
    (RequestValidationError, _invalid_request),
    (StarletteHTTPException, _http_error),
    (Exception, _unexpected),
)


# --- the page --------------------------------------------------------------------------------------------
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def healthz() -> dict:
    return {"status": "ok"}


class _WebChat:
    """One app's state (its scope, demo targets and shown images) and the routes that use it.

    The route handlers are bound methods, so each app created by :func:`create_web_app` has its own state.
    """

    def __init__(
        self,
        engine: ConversationEngine,
        retriever: RetrieverClient,
        scope: SearchScope,
        pick_target: TargetPicker | None,
        title: str,
        about: str | None,
        examples: Sequence[str],
    ) -> None:
        self.engine = engine
        self.retriever = retriever
        self.scope = scope
        self.pick_target = pick_target
        self.title = title
        self.about = about
        self.examples = examples
        self.targets: OrderedDict[str, str] = OrderedDict()
        self.visible: OrderedDict[str, None] = OrderedDict()

    # --- helpers -------------------------------------------------------------------------------------
    def internal(self, cid: str) -> str:
        if not _CID.match(cid):
            raise WebError(f"there is no conversation {cid!r}; reload the page to start a new one", 404)
        return ID_PREFIX + cid

    def target_rank(self, cid: str) -> int | None:
        """Rank (1 = best) of the conversation's target in its current search; None beyond RANK_LIMIT."""
        target = self.targets.get(cid)
        state = self.engine.get(ID_PREFIX + cid)
        if target is None or state is None or state.dialog is None:
            return None
        search_scope = state.scope.narrow(exclude_ids=state.excluded_ids)
        hits = self.engine.searcher.search(state.dialog, k=RANK_LIMIT, scope=search_scope)
        return next((rank for rank, hit in enumerate(hits, start=1) if hit.id == target), None)

    def show(self, *image_ids: str) -> None:
        """Allow the image proxy to serve these ids (they were shown within the app's scope)."""
        for image_id in image_ids:
            self.visible[image_id] = None
            self.visible.move_to_end(image_id)
        while len(self.visible) > MAX_VISIBLE:
            self.visible.popitem(last=False)

    def shown(self, image_id: str) -> str:
        if image_id not in self.visible:
            raise WebError(f"image {image_id!r} is not among the images shown in this chat", 404)
        return image_id

    async def view(self, cid: str, result: TurnResult) -> TurnView:
        rank = await run_in_threadpool(self.target_rank, cid) if cid in self.targets else None
        turn = TurnView.of(
            result,
            conversation_id=cid,
            target_id=self.targets.get(cid),
            target_rank=rank,
            rank_limit=RANK_LIMIT,
        )
        self.show(*(hit.id for hit in turn.hits), *([turn.chosen.id] if turn.chosen else []))
        return turn

    # --- the page ------------------------------------------------------------------------------------
    async def info(self) -> AppInfo:
        return AppInfo(
            title=self.title,
            demo_targets=self.pick_target is not None,
            about=self.about,
            examples=list(self.examples),
        )

    # --- conversations -------------------------------------------------------------------------------
    async def new_conversation(self) -> ConversationCreated:
        return ConversationCreated(
            conversation_id=uuid.uuid4().hex, demo_targets=self.pick_target is not None
        )

    async def current(self, cid: str) -> TurnView:
        return await self.view(cid, await self.engine.acurrent(self.internal(cid)))

    async def message(self, cid: str, body: MessageIn) -> TurnView:
        return await self.view(cid, await self.engine.ahandle(self.internal(cid), body.text, self.scope))

    async def choose(self, cid: str, body: ChooseIn) -> TurnView:
        return await self.view(cid, await self.engine.achoose(self.internal(cid), body.image_id))

    async def more(self, cid: str, body: MoreIn) -> TurnView:
        return await self.view(cid, await self.engine.amore(self.internal(cid), body.count))

    async def reject(self, cid: str) -> TurnView:
        return await self.view(cid, await self.engine.areject_all(self.internal(cid)))

    async def restart(self, cid: str) -> TurnView:
        return await self.view(cid, await self.engine.arestart(self.internal(cid)))

    # --- the demo's target ---------------------------------------------------------------------------
    async def new_target(self, cid: str) -> TargetView:
        self.internal(cid)
        if self.pick_target is None:
            raise WebError("this web chat has no demo gallery to pick a target from", 404)
        target = await run_in_threadpool(self.pick_target)
        self.targets[cid] = target
        self.show(target)
        self.targets.move_to_end(cid)
        while len(self.targets) > MAX_TARGETS:
            self.targets.popitem(last=False)
        rank = await run_in_threadpool(self.target_rank, cid)
        return TargetView(
            id=target,
            thumbnail=f"/api/images/{target}/thumbnail",
            image=f"/api/images/{target}",
            rank=rank,
            rank_limit=RANK_LIMIT,
        )

    # --- images (proxied from the retriever service; only those this app has shown) -----------------
    async def thumbnail(self, image_id: str) -> Response:
        fetch = partial(self.retriever.thumbnail, self.shown(image_id), allowed=self.scope.allowed)
        data = await run_in_threadpool(fetch)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def image(self, image_id: str) -> Response:
        fetch = partial(self.retriever.image, self.shown(image_id), allowed=self.scope.allowed)
        data = await run_in_threadpool(fetch)
        media_type = _sniff(data)
        if media_type == "application/octet-stream":  # HEIC, SVG, PDF, ...: the service's largest rendering
            fetch = partial(
                self.retriever.thumbnail,
                self.shown(image_id),
                allowed=self.scope.allowed,
                size=LARGEST_RENDERING,
            )
            data, media_type = await run_in_threadpool(fetch), "image/jpeg"
        return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})


def create_web_app(
    engine: ConversationEngine,
    retriever: RetrieverClient,
    *,
    scope: SearchScope | None = None,
    pick_target: TargetPicker | None = None,
    title: str = "ChatIR",
    about: str | None = None,
    examples: Sequence[str] = (),
) -> FastAPI:
    """The web chat. ``scope`` bounds every search of this app (default: public images only).

    ``pick_target`` enables the demo's "show me a target": the page shows that image and, after every turn,
    its rank among the current matches.
    """
    chat = _WebChat(engine, retriever, scope or SearchScope(), pick_target, title, about, examples)
    app = FastAPI(title=f"{title} web chat", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for error_type, handler in _ERROR_HANDLERS:
        app.add_exception_handler(error_type, handler)

    app.get("/", include_in_schema=False)(index)
    app.get("/healthz", include_in_schema=False)(healthz)
    app.get("/api/info", response_model=AppInfo)(chat.info)
    conversation = "/api/conversations/{cid}"
    app.post("/api/conversations", response_model=ConversationCreated)(chat.new_conversation)
    app.get(conversation, response_model=TurnView)(chat.current)
    app.post(f"{conversation}/messages", response_model=TurnView)(chat.message)
    app.post(f"{conversation}/choose", response_model=TurnView)(chat.choose)
    app.post(f"{conversation}/more", response_model=TurnView)(chat.more)
    app.post(f"{conversation}/reject", response_model=TurnView)(chat.reject)
    app.post(f"{conversation}/restart", response_model=TurnView)(chat.restart)
    app.post(f"{conversation}/target", response_model=TargetView)(chat.new_target)
    app.get("/api/images/{image_id}/thumbnail")(chat.thumbnail)
    app.get("/api/images/{image_id}")(chat.image)
    return app


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
