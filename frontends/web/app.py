"""The web chat's FastAPI app: a JSON API over the conversation engine plus the static page.

The page (static/) is plain HTML, CSS and JavaScript served by this app: no CDN, no build step, usable
offline and on a phone-width screen. Images are proxied from the retriever service, so the browser only
ever talks to this app.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from agent.engine import ConversationEngine, ConversationNotFoundError, TurnResult
from chatir.errors import ChatIRError, ServiceUnavailableError
from frontends.web.schemas import ChooseIn, MessageIn, TargetView, TurnView
from retriever_service.schemas import PUBLIC, SearchFilter
from tools.client import RetrieverClient, RetrieverRequestError

STATIC = Path(__file__).parent / "static"
RANK_LIMIT = 100

TargetPicker = Callable[[], str]
"""Returns the id of a random gallery image (the demo's "show me a target")."""


def create_web_app(
    engine: ConversationEngine,
    retriever: RetrieverClient,
    *,
    scope: SearchFilter | None = None,
    pick_target: TargetPicker | None = None,
    title: str = "ChatIR",
) -> FastAPI:
    """The web chat. ``scope`` bounds every search of this app (default: public images only)."""
    scope = scope or SearchFilter(allowed=[PUBLIC])
    targets: dict[str, str] = {}
    app = FastAPI(title=f"{title} web chat", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ChatIRError)
    async def chatir_error(request: Request, error: ChatIRError) -> JSONResponse:
        status = 400
        if isinstance(error, ConversationNotFoundError):
            status = 404
        elif isinstance(error, ServiceUnavailableError):
            status = 503
        elif isinstance(error, RetrieverRequestError):
            status = error.status_code
        return JSONResponse({"error": str(error)}, status_code=status)

    def target_rank(result: TurnResult) -> int | None:
        target = targets.get(result.conversation_id)
        if target is None or result.dialog is None:
            return None
        hits = engine.searcher.search(result.dialog, k=RANK_LIMIT, scope=scope)
        return next((rank for rank, hit in enumerate(hits, start=1) if hit.id == target), None)

    async def view(result: TurnResult) -> TurnView:
        rank = await run_in_threadpool(target_rank, result)
        return TurnView.of(result, target_id=targets.get(result.conversation_id), target_rank=rank,
                           rank_limit=RANK_LIMIT)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.post("/api/conversations")
    async def new_conversation() -> dict:
        return {"conversation_id": uuid.uuid4().hex, "demo_targets": pick_target is not None}

    @app.get("/api/conversations/{cid}", response_model=TurnView)
    async def current(cid: str) -> TurnView:
        return await view(await engine.acurrent(cid))

    @app.post("/api/conversations/{cid}/messages", response_model=TurnView)
    async def message(cid: str, body: MessageIn) -> TurnView:
        return await view(await engine.ahandle(cid, body.text, scope))

    @app.post("/api/conversations/{cid}/choose", response_model=TurnView)
    async def choose(cid: str, body: ChooseIn) -> TurnView:
        return await view(await engine.achoose(cid, body.image_id))

    @app.post("/api/conversations/{cid}/reject", response_model=TurnView)
    async def reject(cid: str) -> TurnView:
        return await view(await engine.areject_all(cid))

    @app.post("/api/conversations/{cid}/restart", response_model=TurnView)
    async def restart(cid: str) -> TurnView:
        return await view(await engine.arestart(cid))

    @app.post("/api/conversations/{cid}/target", response_model=TargetView)
    async def new_target(cid: str) -> TargetView:
        if pick_target is None:
            raise HTTPException(404, "this web chat has no demo gallery")
        target = await run_in_threadpool(pick_target)
        targets[cid] = target
        return TargetView(id=target, thumbnail=f"/api/images/{target}/thumbnail", image=f"/api/images/{target}")

    @app.get("/api/images/{image_id}/thumbnail")
    async def thumbnail(image_id: str) -> Response:
        data = await run_in_threadpool(retriever.thumbnail, image_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/images/{image_id}")
    async def image(image_id: str) -> Response:
        data = await run_in_threadpool(retriever.image, image_id)
        return Response(data, media_type=_sniff(data), headers={"Cache-Control": "max-age=3600"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

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
