"""Request and response models of the retriever service's HTTP API (``/v1``).

Light on purpose (pydantic only): the tool client in :mod:`tools` imports these without pulling torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

from chatir.dialog import MAX_TEXT_CHARS, Dialog
from chatir.shard import Shard

PUBLIC = "public"
"""Visibility group of images everybody may see (e.g. the demo gallery, an admin's shared folder)."""


class SearchFilter(BaseModel):
    """Restricts a search. Every field is applied inside the vector query (never by post-filtering).

    ``allowed`` is the caller's scope: an image matches when its own ``allowed`` list shares at least
    one entry with it (channel ids, group names or ``"public"``). ``None`` means unrestricted and is
    only for trusted callers (admin CLI, the evaluation harness).
    """

    allowed: list[str] | None = Field(
        None, max_length=1000, description="Visibility groups the caller may see."
    )
    sources: list[str] | None = Field(None, max_length=100, description="Only images from these sources.")
    tags: list[str] | None = Field(
        None, max_length=100, description="Only images carrying any of these tags."
    )


VectorEncoding = Literal["floats", "base64"]
"""How a hit's image embedding travels: ``floats`` as a JSON list in ``Hit.vector``; ``base64`` as the base64 of
its little-endian float32 bytes in ``Hit.vector_base64`` -- exact, about 4x smaller on the wire and parsed
without building a Python float per value (what the agent asks for: a re-ranker pool is 1,000 vectors)."""


class SearchRequest(BaseModel):
    dialog: Dialog
    k: StrictInt = Field(10, ge=1, le=1000)
    filter: SearchFilter | None = None
    exclude_ids: list[str] = Field(default_factory=list, max_length=10_000)
    with_vectors: StrictBool = Field(
        False,
        description="Also return each hit's image embedding (the information-gain questioner needs them).",
    )
    vector_encoding: VectorEncoding = Field(
        "floats",
        description="With with_vectors: 'floats' fills Hit.vector (a JSON list); 'base64' fills "
        "Hit.vector_base64 (little-endian float32 bytes, base64), exact and about 4x smaller.",
    )


class Hit(BaseModel):
    id: str
    score: float
    uri: str
    thumbnail_url: str
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    source: str | None = None
    text: str | None = Field(None, description="Free text of the image: file name, message text.")
    tags: list[str] = Field(default_factory=list)
    caption: str | None = Field(None, description="What the captioner (CHATIR_CAPTIONER) saw in the image.")
    vector: list[float] | None = Field(
        None, description="The image embedding; only when with_vectors was asked (vector_encoding 'floats')."
    )
    vector_base64: str | None = Field(
        None,
        description="The image embedding as the base64 of its little-endian float32 bytes; only when "
        "with_vectors was asked with vector_encoding 'base64'.",
    )


class SearchResponse(BaseModel):
    hits: list[Hit]
    model: str
    took_ms: float


MAX_POOL_K = 5000
"""The largest pool one ``POST /v1/search/pool`` returns (a full search stops at 1,000 hits)."""


class PoolRequest(BaseModel):
    """``POST /v1/search/pool``: the top-k of a dialog as ids, scores and one matrix of image embeddings, and
    nothing else. What a re-ranker reads (thousands of candidates), at a fraction of the cost of as many full
    hits; the few it keeps are fetched with ``POST /v1/images/lookup``. A client that keeps the embeddings it
    has seen asks ``with_vectors=false`` and fetches only the ones it lacks with ``POST /v1/images/vectors``."""

    dialog: Dialog
    k: StrictInt = Field(1000, ge=1, le=MAX_POOL_K)
    filter: SearchFilter | None = None
    exclude_ids: list[str] = Field(default_factory=list, max_length=10_000)
    with_vectors: bool = Field(True, description="False: ids and scores only (vectors_base64 is empty).")


class PoolResponse(BaseModel):
    ids: list[str] = Field(..., description="Image ids, best first (the same order as POST /v1/search).")
    scores: list[float] = Field(..., description="Each image's cosine to the dialog.")
    dim: int = Field(..., description="The embeddings' dimension.")
    vectors_base64: str = Field(
        ...,
        description="The images' embeddings, one row per id in order, as the base64 of a little-endian "
        "float32 (len(ids), dim) matrix; empty when with_vectors was false.",
    )
    space: str = Field(
        "",
        description="An opaque name of the embedding space the vectors live in (the serving collection and "
        "model). An image's embedding never changes within one space, so a client may keep it under "
        "(space, id); a reindex to another model gives another space.",
    )
    model: str
    took_ms: float


class VectorsRequest(BaseModel):
    """``POST /v1/images/vectors``: the stored embeddings of known ids, within a scope. An id the scope does
    not admit is left out exactly like an unknown one (as in ``POST /v1/images/lookup``)."""

    ids: list[str] = Field(..., max_length=MAX_POOL_K)
    filter: SearchFilter | None = None
    exclude_ids: list[str] = Field(default_factory=list, max_length=10_000)


class VectorsResponse(BaseModel):
    ids: list[str] = Field(..., description="The found ids the scope admits, in the order asked.")
    dim: int = Field(..., description="The embeddings' dimension.")
    vectors_base64: str = Field(
        ...,
        description="One row per returned id, as the base64 of a little-endian float32 (len(ids), dim) matrix.",
    )
    space: str = Field(..., description="The embedding space, as in PoolResponse.space.")
    model: str


MAX_LOOKUP_IDS = 1000
"""Ids one ``POST /v1/images/lookup`` may ask for."""


class LookupRequest(BaseModel):
    """``POST /v1/images/lookup``: full hits for known ids, within a scope. An id the scope does not admit is
    left out exactly like an unknown one, so a lookup never shows more than a search with the same scope."""

    ids: list[str] = Field(..., max_length=MAX_LOOKUP_IDS)
    filter: SearchFilter | None = None
    exclude_ids: list[str] = Field(default_factory=list, max_length=10_000)


class LookupResponse(BaseModel):
    hits: list[Hit] = Field(
        ..., description="The found ids in the order asked, with score 0 (a lookup ranks nothing)."
    )
    model: str


class EncodeRequest(BaseModel):
    dialog: Dialog


class EncodeResponse(BaseModel):
    vector: list[float]
    model: str
    text: str = Field(..., description="The dialog text actually encoded (after truncation).")


MAX_ENCODE_TEXTS = 1024
"""Texts one ``POST /v1/encode/texts`` may carry."""


class EncodeTextsRequest(BaseModel):
    """Plain texts to embed with the dialog encoder as they are (no dialog joining, no truncation policy
    beyond the model's own token limit): what the LLM-free questioners score answers with."""

    texts: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]] = Field(
        ..., min_length=1, max_length=MAX_ENCODE_TEXTS
    )


class EncodeTextsResponse(BaseModel):
    vectors: list[list[float]] = Field(..., description="One L2-normalised embedding per text, in order.")
    model: str


class IndexRequest(BaseModel):
    paths: list[str] = Field(..., min_length=1, max_length=1000)
    source: str | None = Field(None, description="Source label; defaults to the folder path.")
    allowed: list[str] = Field(default_factory=lambda: [PUBLIC])
    tags: list[str] = Field(default_factory=list)
    owner: str | None = None
    text: str | None = Field(
        None,
        max_length=4000,
        description="Free text of the images (e.g. the Slack "
        "message they were shared with); defaults to each file's name.",
    )
    prune: bool = False
    shard: Shard | None = Field(
        None,
        description='Index only this shard of the files ("I/N" or {"index": I, "count": N}, I from 0): a stable '
        "share by a hash of each file's path relative to its folder, so N jobs split one input.",
    )


class IndexJob(BaseModel):
    id: str
    state: str = Field(..., description="queued, running, done or failed")
    total: int = 0
    done: int = 0
    added: int = 0
    skipped: list[dict[str, str]] = Field(default_factory=list, description="[{path, reason}] of bad files.")
    error: str | None = None
    unchanged: int = Field(0, description="Files already indexed with the same content (not re-embedded).")
    duplicates: int = Field(0, description="Files whose bytes were already indexed under another path.")
    pruned: int = Field(0, description="Entries removed because their files are gone (prune=true).")
    captioned: int = Field(
        0, description="Images given a caption by the service's captioner (CHATIR_CAPTIONER)."
    )
    other_shards: int = Field(0, description="Files left to the other shards (a sharded job).")


class ReindexRequest(BaseModel):
    """``POST /v1/reindex``: rebuild the index for another model while the current one serves, then switch."""

    model: str = Field(..., min_length=1, max_length=500, description="Hub id or folder of the new model.")
    drop_old: bool = Field(False, description="Delete the old collection once the new one serves.")


class ErrorResponse(BaseModel):
    error: str
    detail: object | None = None


class HealthResponse(BaseModel):
    status: str = "ok"
    store_id: str = Field(..., description="Fingerprint of the vector store the service uses (not its path).")


class ReadyResponse(BaseModel):
    status: str = "ready"
    model: str
    images: int = Field(..., description="Images in the index.")
    store_id: str
    notice: str | None = Field(
        None, description="A sentence for people about the model (e.g. the demo's starter)."
    )


class DeleteResponse(BaseModel):
    id: str
    deleted: bool = True
