"""Helpers for the tools tests (no tests here): a fake retriever service and a live-server runner.

The fake plays the service's HTTP protocol with the project's own schemas (``SearchRequest`` in,
``SearchResponse`` out, ``{"error", "detail"}`` errors, bearer auth) over a small catalogue, applies the
filter like the real index does (``allowed`` shares an entry, sources/tags, exclude_ids), records every
request it receives, and can be told to fail (503/500) or to stall, for the retry and timeout tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from chatir.schemas import PUBLIC, Hit, SearchRequest, SearchResponse
from chatir.scope import SearchScope


@dataclass(frozen=True)
class FakeImage:
    text: str
    source: str
    allowed: tuple[str, ...]
    tags: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:32]


CATALOGUE = (
    FakeImage("red bicycle leaning on a brick wall", "photos", (PUBLIC,), ("bike", "street")),
    FakeImage("golden retriever dog playing with a ball in the park", "photos", (PUBLIC,), ("dog",)),
    FakeImage("black cat sleeping on a grey sofa", "pets", ("C-PETS",), ("cat",)),
    FakeImage("sunset over the sea with a sailing boat", "travel", (PUBLIC, "C-PETS"), ("sea",)),
    FakeImage("secret quarterly revenue chart of the company", "finance", ("C-SECRET",), ("chart",)),
    FakeImage("dog sleeping next to a cat on a sofa", "pets", ("C-PETS",), ("dog", "cat")),
)
SECRET_IDS = {image.id for image in CATALOGUE if "C-SECRET" in image.allowed}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@dataclass
class FakeState:
    """What the tests control and observe."""

    api_key: str | None = None
    fail_with: list[int] = field(default_factory=list)  # statuses to answer before behaving, in order
    delay_s: float = 0.0
    requests: list[SearchRequest] = field(default_factory=list)
    calls: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)


def fake_service(state: FakeState | None = None) -> FastAPI:
    """A FastAPI app speaking the retriever service's protocol; ``app.state.fake`` is its FakeState."""
    app = FastAPI()
    app.state.fake = fake = state or FakeState()

    def error(status: int, message: str, detail: object = None) -> JSONResponse:
        return JSONResponse({"error": message, "detail": detail}, status_code=status)

    @app.middleware("http")
    async def gate(request: Request, call_next):
        fake.calls += 1
        fake.headers.append(dict(request.headers))
        if fake.delay_s:
            await asyncio.sleep(fake.delay_s)
        if fake.fail_with:
            status = fake.fail_with.pop(0)
            return error(
                status, "the vector store is restarting" if status == 503 else "internal server error"
            )
        authorized = request.headers.get("authorization") == f"Bearer {fake.api_key}"
        if request.url.path.startswith("/v1") and fake.api_key and not authorized:
            return error(401, "missing or wrong bearer token")
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "store_id": "fake"}

    @app.post("/v1/search")
    async def search(request: Request) -> Response:
        try:
            body = SearchRequest.model_validate_json(await request.body())
        except ValueError as exc:
            return error(
                422,
                "invalid request: dialog.caption: field required",
                [{"field": "body", "message": str(exc)}],
            )
        fake.requests.append(body)
        words = _words(body.dialog.text())
        scope = SearchScope.from_filter(body.filter, body.exclude_ids)  # the service's own scope semantics
        scored = [
            (len(words & _words(image.text)) / len(_words(image.text)), image)
            for image in CATALOGUE
            if scope.admits(allowed=image.allowed, source=image.source, tags=image.tags, image_id=image.id)
        ]
        scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        hits = [
            Hit(
                id=image.id,
                score=round(score, 4),
                uri=f"/data/{image.source}/{image.text.replace(' ', '_')[:24]}.jpg",
                thumbnail_url=f"/v1/images/{image.id}/thumbnail",
                source=image.source,
                text=image.text,
                tags=list(image.tags),
            )
            for score, image in scored[: body.k]
        ]
        payload = SearchResponse(hits=hits, model="fake-word-overlap", took_ms=0.1)
        return JSONResponse(payload.model_dump(mode="json"))

    @app.get("/v1/images/{image_id}")
    async def image(image_id: str) -> Response:
        if image_id not in {i.id for i in CATALOGUE}:
            return error(404, f"No image with id {image_id!r} in the index.")
        return Response(b"IMAGE:" + image_id.encode(), media_type="image/jpeg")

    @app.get("/v1/images/{image_id}/thumbnail")
    async def thumbnail(image_id: str) -> Response:
        if image_id not in {i.id for i in CATALOGUE}:
            return error(404, f"No image with id {image_id!r} in the index.")
        return Response(b"THUMB:" + image_id.encode(), media_type="image/jpeg")

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app, timeout_s: float = 20.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free local port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def closed_port_url() -> str:
    """A local URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"
