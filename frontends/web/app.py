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
    scope = scope or SearchScope()
    targets: OrderedDict[str, str] = OrderedDict()
    visible: OrderedDict[str, None] = OrderedDict()
    app = FastAPI(title=f"{title} web chat", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # --- errors: always JSON with a sentence for people ---------------------------------------------
    @app.exception_handler(ChatIRError)
    async def chatir_error(request: Request, error: ChatIRError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=_status_of(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in error.errors()]
        return JSONResponse({"error": _validation_message(error), "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("web chat: unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "something went wrong on our side; please try again"}, status_code=500)

    # --- helpers -----------------------------------------------------------------------------------
    def internal(cid: str) -> str:
        if not _CID.match(cid):
            raise WebError(f"there is no conversation {cid!r}; reload the page to start a new one", 404)
        return ID_PREFIX + cid

    def target_rank(cid: str) -> int | None:
        """Rank (1 = best) of the conversation's target in its current search; None beyond RANK_LIMIT."""
        target = targets.get(cid)
        state = engine.get(ID_PREFIX + cid)
        if target is None or state is None or state.dialog is None:
            return None
        search_scope = state.scope.narrow(exclude_ids=state.excluded_ids)
        hits = engine.searcher.search(state.dialog, k=RANK_LIMIT, scope=search_scope)
        return next((rank for rank, hit in enumerate(hits, start=1) if hit.id == target), None)

    def show(*image_ids: str) -> None:
        """Allow the image proxy to serve these ids (they were shown within the app's scope)."""
        for image_id in image_ids:
            visible[image_id] = None
            visible.move_to_end(image_id)
        while len(visible) > MAX_VISIBLE:
            visible.popitem(last=False)

    def shown(image_id: str) -> str:
        if image_id not in visible:
            raise WebError(f"image {image_id!r} is not among the images shown in this chat", 404)
        return image_id

    async def view(cid: str, result: TurnResult) -> TurnView:
        rank = await run_in_threadpool(target_rank, cid) if cid in targets else None
        turn = TurnView.of(result, conversation_id=cid, target_id=targets.get(cid), target_rank=rank,
                           rank_limit=RANK_LIMIT)
        show(*(hit.id for hit in turn.hits), *([turn.chosen.id] if turn.chosen else []))
        return turn

    # --- the page ----------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/info", response_model=AppInfo)
    async def info() -> AppInfo:
        return AppInfo(title=title, demo_targets=pick_target is not None, about=about, examples=list(examples))

    # --- conversations -----------------------------------------------------------------------------
    @app.post("/api/conversations", response_model=ConversationCreated)
    async def new_conversation() -> ConversationCreated:
        return ConversationCreated(conversation_id=uuid.uuid4().hex, demo_targets=pick_target is not None)

    @app.get("/api/conversations/{cid}", response_model=TurnView)
    async def current(cid: str) -> TurnView:
        return await view(cid, await engine.acurrent(internal(cid)))

    @app.post("/api/conversations/{cid}/messages", response_model=TurnView)
    async def message(cid: str, body: MessageIn) -> TurnView:
        return await view(cid, await engine.ahandle(internal(cid), body.text, scope))

    @app.post("/api/conversations/{cid}/choose", response_model=TurnView)
    async def choose(cid: str, body: ChooseIn) -> TurnView:
        return await view(cid, await engine.achoose(internal(cid), body.image_id))

    @app.post("/api/conversations/{cid}/more", response_model=TurnView)
    async def more(cid: str, body: MoreIn) -> TurnView:
        return await view(cid, await engine.amore(internal(cid), body.count))

    @app.post("/api/conversations/{cid}/reject", response_model=TurnView)
    async def reject(cid: str) -> TurnView:
        return await view(cid, await engine.areject_all(internal(cid)))

    @app.post("/api/conversations/{cid}/restart", response_model=TurnView)
    async def restart(cid: str) -> TurnView:
        return await view(cid, await engine.arestart(internal(cid)))

    # --- the demo's target -------------------------------------------------------------------------
    @app.post("/api/conversations/{cid}/target", response_model=TargetView)
    async def new_target(cid: str) -> TargetView:
        internal(cid)
        if pick_target is None:
            raise WebError("this web chat has no demo gallery to pick a target from", 404)
        target = await run_in_threadpool(pick_target)
        targets[cid] = target
        show(target)
        targets.move_to_end(cid)
        while len(targets) > MAX_TARGETS:
            targets.popitem(last=False)
        rank = await run_in_threadpool(target_rank, cid)
        return TargetView(id=target, thumbnail=f"/api/images/{target}/thumbnail", image=f"/api/images/{target}",
                          rank=rank, rank_limit=RANK_LIMIT)

    # --- images (proxied from the retriever service; only those this app has shown) ---------------------
    @app.get("/api/images/{image_id}/thumbnail")
    async def thumbnail(image_id: str) -> Response:
        data = await run_in_threadpool(partial(retriever.thumbnail, shown(image_id), allowed=scope.allowed))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/images/{image_id}")
    async def image(image_id: str) -> Response:
        data = await run_in_threadpool(partial(retriever.image, shown(image_id), allowed=scope.allowed))
        return Response(data, media_type=_sniff(data), headers={"Cache-Control": "max-age=3600"})

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
