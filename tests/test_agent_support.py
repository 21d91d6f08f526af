"""Helpers for the agent tests (no tests here): a transparent image-text model over a toy gallery.

The engine and the questioners need an image-text model whose behaviour a test can predict; real weights
cannot exist here and a tiny random model gives no signal. :class:`KeywordModel` is such a model: texts and
"images" (described by their attribute words) are embedded as normalised counts over a fixed vocabulary, so
"what colour is it? red" is close to red images. It implements the slice of ``RetrievalModel`` the agent uses
(``encode_texts``, ``dialog_text``, ``encode_dialogs``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.questioners.bank import QuestionBank
from agent.search import InMemorySearcher
from chatir.dialog import Dialog
from chatir.schemas import PUBLIC, Hit

COLOURS = ("red", "blue", "green")
SHAPES = ("circle", "square", "star")
BACKGROUNDS = ("white", "black")
COUNTS = ("one", "two")
VOCABULARY = (*COLOURS, *SHAPES, *BACKGROUNDS, *COUNTS)


class KeywordModel:
    """Bag of attribute words; a bias dimension keeps texts without any such word well defined."""

    model_id = "keyword-test-model"
    dim = len(VOCABULARY) + 1

    def __init__(self) -> None:
        self.calls = 0
        self.index = {word: i for i, word in enumerate(VOCABULARY)}

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, -1] = 0.05
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in self.index:
                    out[row, self.index[word]] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def dialog_text(self, dialog: Dialog) -> str:
        return dialog.text()

    def encode_images(self, images: Sequence) -> np.ndarray:
        """Toy "pixels": the PNG carries its description in a text chunk (see :func:`toy_thumbnail`)."""
        return self.encode_texts([image.info["description"] for image in images])

    def encode_dialogs(self, dialogs: Sequence[Dialog]) -> np.ndarray:
        return self.encode_texts([self.dialog_text(d) for d in dialogs])


@dataclass(frozen=True)
class ToyImage:
    colour: str
    shape: str
    background: str
    count: str

    @property
    def id(self) -> str:
        return f"{self.count}-{self.colour}-{self.shape}-on-{self.background}"

    def description(self) -> str:
        return f"{self.count} {self.colour} {self.shape} {self.background}"


GALLERY = [ToyImage(*values) for values in itertools.product(COLOURS, SHAPES, BACKGROUNDS, COUNTS)]

TOY_BANK = QuestionBank.from_pairs(
    "toy",
    [
        ("What colour is the shape?", COLOURS),
        ("What shape is it?", SHAPES),
        ("What colour is the background?", BACKGROUNDS),
        ("How many shapes are there?", COUNTS),
        ("Is the picture sharp?", ("yes", "no")),  # the model cannot see sharpness: zero information
    ],
)


def toy_oracle(image: ToyImage, question: str) -> str:
    """Answers a toy-bank question about ``image`` (what a user would say)."""
    q = question.lower()
    if "background" in q:
        return image.background
    if "colour" in q:
        return image.colour
    if "shape is" in q:
        return image.shape
    if "how many" in q:
        return image.count
    return "I don't know"


def toy_searcher(
    model: KeywordModel | None = None, allowed: Sequence[Sequence[str]] | None = None
) -> InMemorySearcher:
    model = model or KeywordModel()
    vectors = model.encode_texts([image.description() for image in GALLERY])
    items = [
        Hit(id=image.id, score=0.0, uri=f"/gallery/{image.id}.png", thumbnail_url=f"/thumbs/{image.id}.png",
            text=image.description(), tags=[image.colour], source="gallery" if i % 2 == 0 else "archive")
        for i, image in enumerate(GALLERY)
    ]  # fmt: skip
    return InMemorySearcher(model, vectors, items, allowed=allowed or [[PUBLIC]] * len(items))


def rank_of(searcher: InMemorySearcher, dialog: Dialog, target_id: str) -> int:
    """1-based rank of the target among all gallery images for ``dialog`` (ties broken by gallery order)."""
    scores = searcher.scores(dialog)
    target = searcher.row[target_id]
    better = np.sum(scores > scores[target]) + np.sum((scores == scores[target])[:target])
    return int(better) + 1


class RecordingSearcher:
    """Wraps a searcher and records every call (to assert the scope that reached it)."""

    def __init__(self, inner, *, fail: bool = False) -> None:
        self.inner = inner
        self.calls: list[dict] = []
        self.fail = fail

    def search(self, dialog, *, k, scope, with_vectors=False):
        self.calls.append({"dialog": dialog, "k": k, "scope": scope, "with_vectors": with_vectors})
        if self.fail:
            from chatir.errors import ServiceUnavailableError

            raise ServiceUnavailableError("the image index is unavailable: test says so")
        return self.inner.search(dialog, k=k, scope=scope, with_vectors=with_vectors)


def toy_thumbnail(image: ToyImage) -> bytes:
    """A PNG standing for the image; its description rides in a tEXt chunk for :class:`KeywordModel`."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("description", image.description())
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def toy_service_transport(
    searcher: InMemorySearcher, requests: list, *, texts: list | None = None, model: dict | None = None
):
    """``httpx.MockTransport`` playing the retriever service's search (plain, pool, lookup and vectors),
    text-encoding and readiness endpoints over the toy gallery (the routes and bodies of ``chatir.schemas``).

    It applies the request's filter and exclude_ids like the real service, appends every search, pool, lookup
    and vectors request it receives to ``requests`` (and every text it embeds to ``texts``), and sends image
    embeddings when asked (``with_vectors``). ``model["id"]`` is the model it reports, and names its embedding
    space (change it to play a restart, or a reindex, with another one).
    """
    import base64

    import httpx
    import numpy as np
    from pydantic import BaseModel

    from chatir.schemas import (
        EncodeTextsRequest,
        EncodeTextsResponse,
        LookupRequest,
        LookupResponse,
        PoolRequest,
        PoolResponse,
        SearchRequest,
        SearchResponse,
        VectorsRequest,
        VectorsResponse,
    )
    from tools.scope import SearchScope

    model = model if model is not None else {"id": searcher.model.model_id}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(
                200, json={"status": "ready", "model": model["id"], "images": len(GALLERY), "store_id": "toy"}
            )
        if request.url.path == "/v1/encode/texts":
            body = EncodeTextsRequest.model_validate_json(request.content)
            if texts is not None:
                texts.extend(body.texts)
            vectors = np.asarray(searcher.model.encode_texts(body.texts), dtype=np.float32)
            reply = EncodeTextsResponse(vectors=vectors.tolist(), model=model["id"])
            return httpx.Response(200, json=reply.model_dump(mode="json"))
        kinds = {
            "/v1/search": SearchRequest,
            "/v1/search/pool": PoolRequest,
            "/v1/images/lookup": LookupRequest,
            "/v1/images/vectors": VectorsRequest,
        }
        if request.url.path not in kinds:
            return httpx.Response(404, json={"error": "not found"})
        body = kinds[request.url.path].model_validate_json(request.content)
        requests.append(body)
        flt = body.filter
        scope = SearchScope(
            allowed=flt.allowed if flt else None,
            sources=flt.sources if flt else None,
            tags=flt.tags if flt else None,
            exclude_ids=body.exclude_ids,
        )
        reply: BaseModel
        space, dim = f"toy-{model['id']}", int(searcher.matrix.shape[1])
        if isinstance(body, LookupRequest):
            reply = LookupResponse(hits=searcher.lookup(body.ids, scope=scope), model=model["id"])
        elif isinstance(body, VectorsRequest):
            found = [hit.id for hit in searcher.lookup(body.ids, scope=scope)]
            matrix = searcher.vectors(found) if found else np.zeros((0, dim), np.float32)
            reply = VectorsResponse(
                ids=found,
                dim=dim,
                vectors_base64=base64.b64encode(matrix.astype("<f4").tobytes()).decode("ascii"),
                space=space,
                model=model["id"],
            )
        elif isinstance(body, PoolRequest):
            pool = searcher.pool(body.dialog, k=body.k, scope=scope)
            vectors = pool.vectors if body.with_vectors else pool.vectors[:0]
            reply = PoolResponse(
                ids=pool.ids,
                scores=[float(x) for x in pool.scores],
                dim=dim,
                vectors_base64=base64.b64encode(vectors.astype("<f4").tobytes()).decode("ascii"),
                space=space,
                model=model["id"],
                took_ms=1.0,
            )
        else:
            hits = searcher.search(body.dialog, k=body.k, scope=scope, with_vectors=body.with_vectors)
            reply = SearchResponse(hits=hits, model=model["id"], took_ms=1.0)
        return httpx.Response(200, json=reply.model_dump(mode="json"))

    return httpx.MockTransport(handle)
