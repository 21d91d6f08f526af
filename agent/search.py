"""How the engine searches: the :class:`Searcher` protocol and its two implementations.

- :class:`ServiceSearcher`: the product path, over HTTP through ``tools.client.RetrieverClient``.
- :class:`InMemorySearcher`: a corpus held as a matrix of image embeddings, for the evaluation harness and
  the benchmarks (no service, no Qdrant); it is also a :class:`~agent.questioners.scoring.VectorLookup`.

:class:`ServiceTextEncoder` gives the information-gain questioner the service's text embeddings (image
embeddings come with the hits), so the agent holds no model of its own.

The scope (a :class:`tools.scope.SearchScope`: visibility groups, sources, tags and excluded ids) always
comes from the conversation's stored state, never from user text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from agent.vector_cache import VectorCache
from agent.vectors import pack, unpack_matrix
from chatir.dialog import Dialog
from chatir.schemas import (
    MAX_LOOKUP_IDS,
    MAX_POOL_K,
    PUBLIC,
    Hit,
    LookupRequest,
    PoolRequest,
    PoolResponse,
    SearchFilter,
    SearchRequest,
    VectorEncoding,
    VectorsRequest,
)
from chatir.scope import SearchScope

if TYPE_CHECKING:
    from tools.client import RetrieverClient

MAX_K = 1000
"""The service's largest ``k`` for full hits (a re-ranker without the pool call reads this many at most)."""


def as_scope(scope: SearchScope | SearchFilter | None) -> SearchScope:
    """The conversation scope: ``None`` is public only; a service ``SearchFilter`` is taken field by field."""
    if scope is None:
        return SearchScope()
    if isinstance(scope, SearchScope):
        return scope
    if isinstance(scope, SearchFilter):
        return SearchScope.from_filter(scope)
    raise TypeError(f"a scope must be a SearchScope (or a SearchFilter), not {type(scope).__name__}")


@runtime_checkable
class Searcher(Protocol):
    def search(
        self,
        dialog: Dialog,
        *,
        k: int,
        scope: SearchScope,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The top ``k`` images for the dialog within ``scope`` (none of ``scope.exclude_ids``), best first."""
        ...


@dataclass(frozen=True)
class Pool:
    """A search's top-k as ids, the dialog's cosine to each and their embeddings (row i is ``ids[i]``), best
    first: what the answer re-ranker reads, without a full hit per candidate."""

    ids: list[str]
    scores: np.ndarray
    vectors: np.ndarray


@runtime_checkable
class PoolSearcher(Searcher, Protocol):
    """A searcher that can also hand over a bare pool, and full hits for the few ids a re-ranker keeps."""

    def pool(self, dialog: Dialog, *, k: int, scope: SearchScope) -> Pool:
        """:meth:`Searcher.search`'s top ``k`` as a :class:`Pool`."""
        ...

    def lookup(self, ids: Sequence[str], *, scope: SearchScope) -> list[Hit]:
        """Hits (score 0, no vector) for the ids ``scope`` admits, in that order; others are left out."""
        ...


class ServiceSearcher:
    """Searches through the retriever service (raises ``ServiceUnavailableError`` when it is down).

    With a :class:`~agent.vector_cache.VectorCache`, a pool asks the service for ids and scores only and fetches
    just the embeddings the cache lacks (``POST /v1/images/vectors``)."""

    def __init__(
        self,
        client: RetrieverClient,
        *,
        vector_encoding: VectorEncoding = "base64",
        vector_cache: VectorCache | None = None,
    ) -> None:
        self.client = client
        self.vector_encoding: VectorEncoding = vector_encoding
        """How hits' image embeddings travel (``base64``: exact float32 bytes; ``floats``: JSON lists)."""
        self.vector_cache = vector_cache

    def search(
        self,
        dialog: Dialog,
        *,
        k: int,
        scope: SearchScope,
        with_vectors: bool = False,
    ) -> list[Hit]:
        scope = as_scope(scope)
        if scope.is_empty:
            return []
        request = SearchRequest(
            dialog=dialog,
            k=min(k, MAX_K),
            filter=scope.to_filter(),
            exclude_ids=list(scope.exclude_ids),
            with_vectors=with_vectors,
            vector_encoding=self.vector_encoding,
        )
        return self.client.search(request).hits

    def pool(self, dialog: Dialog, *, k: int, scope: SearchScope) -> Pool:
        scope = as_scope(scope)
        if scope.is_empty:
            return Pool([], np.zeros(0), np.zeros((0, 0), np.float32))
        cache = self.vector_cache
        response = self._pool_response(dialog, k, scope, with_vectors=cache is None)
        if cache is None or response.vectors_base64 or not response.ids or not response.space:
            return self._whole_pool(response)
        ids, scores = list(response.ids), np.asarray(response.scores, np.float64)
        rows = cache.get_many(response.space, ids)
        missing = [image_id for image_id, row in zip(ids, rows, strict=True) if row is None]
        if missing:
            fetched = self._vectors(missing, scope, response.space)
            if fetched is None:  # the service switched models between the two calls: ask again, whole
                return self._whole_pool(self._pool_response(dialog, k, scope, with_vectors=True))
            rows = [
                fetched.get(image_id) if row is None else row for image_id, row in zip(ids, rows, strict=True)
            ]
        # An image deleted (or moved out of scope) between the two calls is left out.
        kept = [(i, row) for i, row in enumerate(rows) if row is not None]
        if not kept:
            return Pool([], np.zeros(0), np.zeros((0, response.dim), np.float32))
        return Pool(
            [ids[i] for i, _ in kept], scores[[i for i, _ in kept]], np.stack([row for _, row in kept])
        )

    def _pool_response(
        self, dialog: Dialog, k: int, scope: SearchScope, *, with_vectors: bool
    ) -> PoolResponse:
        return self.client.search_pool(
            PoolRequest(
                dialog=dialog,
                k=min(k, MAX_POOL_K),
                filter=scope.to_filter(),
                exclude_ids=list(scope.exclude_ids),
                with_vectors=with_vectors,
            )
        )

    def _whole_pool(self, response: PoolResponse) -> Pool:
        """The pool a response carries with its vectors (kept in the cache, if any)."""
        ids = list(response.ids)
        vectors = unpack_matrix(response.vectors_base64, len(ids), response.dim)
        if self.vector_cache is not None and response.space:
            self.vector_cache.put_many(response.space, ids, vectors)
        return Pool(ids, np.asarray(response.scores, np.float64), vectors)

    def _vectors(self, ids: Sequence[str], scope: SearchScope, space: str) -> dict[str, np.ndarray] | None:
        """The stored embeddings of ``ids`` that ``scope`` admits, now kept in the cache; None when the service
        answers from another embedding space than ``space``."""
        assert self.vector_cache is not None
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), MAX_POOL_K):
            response = self.client.vectors(
                VectorsRequest(
                    ids=list(ids[start : start + MAX_POOL_K]),
                    filter=scope.to_filter(),
                    exclude_ids=list(scope.exclude_ids),
                )
            )
            if response.space != space:
                return None
            matrix = unpack_matrix(response.vectors_base64, len(response.ids), response.dim)
            self.vector_cache.put_many(space, response.ids, matrix)
            found.update(zip(response.ids, matrix, strict=True))
        return found

    def lookup(self, ids: Sequence[str], *, scope: SearchScope) -> list[Hit]:
        scope = as_scope(scope)
        if scope.is_empty:
            return []
        hits: list[Hit] = []
        for start in range(0, len(ids), MAX_LOOKUP_IDS):
            request = LookupRequest(
                ids=list(ids[start : start + MAX_LOOKUP_IDS]),
                filter=scope.to_filter(),
                exclude_ids=list(scope.exclude_ids),
            )
            hits.extend(self.client.lookup(request).hits)
        return hits


class DialogEncoder(Protocol):
    def encode_dialogs(self, dialogs: Sequence[Dialog]) -> np.ndarray: ...


class InMemorySearcher:
    """Exact cosine search over an in-memory corpus (row i of ``vectors`` is the image of ``items[i]``)."""

    def __init__(
        self,
        model: DialogEncoder,
        vectors: np.ndarray,
        items: Sequence[Hit],
        *,
        allowed: Sequence[Sequence[str]] | None = None,
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(items):
            raise ValueError(f"need one vector per item: got {vectors.shape} for {len(items)} items")
        if allowed is not None and len(allowed) != len(items):
            raise ValueError("allowed must have one entry per item")
        self.model = model
        self.matrix = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.items = list(items)
        self.allowed = [list(a) for a in allowed] if allowed is not None else [[PUBLIC]] * len(items)
        self.row = {item.id: i for i, item in enumerate(self.items)}
        if len(self.row) != len(self.items):
            raise ValueError("item ids must be unique")

    @classmethod
    def from_ids(cls, model: DialogEncoder, vectors: np.ndarray, ids: Sequence[str]) -> InMemorySearcher:
        """A corpus known only by ids (the evaluation harness's case)."""
        items = [Hit(id=i, score=0.0, uri=i, thumbnail_url="") for i in ids]
        return cls(model, vectors, items)

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Image embeddings of ``ids`` (the scorer's :class:`VectorLookup`); KeyError for unknown ids."""
        return self.matrix[[self.row[i] for i in ids]]

    def scores(self, dialog: Dialog) -> np.ndarray:
        """Cosine of the dialog with every corpus image."""
        query = np.asarray(self.model.encode_dialogs([dialog]), dtype=np.float32)[0]
        return self.matrix @ query

    def search(
        self,
        dialog: Dialog,
        *,
        k: int,
        scope: SearchScope,
        with_vectors: bool = False,
    ) -> list[Hit]:
        top, scores = self._top(dialog, k, as_scope(scope))
        return [
            self.items[i].model_copy(
                update={
                    "score": float(scores[i]),
                    "vector_base64": pack(self.matrix[i]) if with_vectors else None,
                }
            )
            for i in top
        ]

    def pool(self, dialog: Dialog, *, k: int, scope: SearchScope) -> Pool:
        top, scores = self._top(dialog, k, as_scope(scope))
        return Pool([self.items[i].id for i in top], scores[top], self.matrix[top])

    def lookup(self, ids: Sequence[str], *, scope: SearchScope) -> list[Hit]:
        admitted = self._admitted(as_scope(scope))
        rows = [self.row[i] for i in dict.fromkeys(ids) if i in self.row]
        return [
            self.items[row].model_copy(update={"score": 0.0, "vector_base64": None})
            for row in rows
            if admitted[row]
        ]

    def _admitted(self, scope: SearchScope) -> np.ndarray:
        """Which corpus rows ``scope`` admits."""
        mask = np.ones(len(self.items), dtype=bool)
        for image_id in scope.exclude_ids:
            if (row := self.row.get(image_id)) is not None:
                mask[row] = False
        if scope.allowed is not None or scope.sources is not None or scope.tags is not None:
            mask &= np.fromiter(
                (
                    scope.admits(allowed=groups, source=item.source, tags=item.tags)
                    for item, groups in zip(self.items, self.allowed, strict=True)
                ),
                bool,
            )
        return mask

    def _top(self, dialog: Dialog, k: int, scope: SearchScope) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` rows ``scope`` admits, best first (ties by corpus order), and every row's score."""
        scores = self.scores(dialog).astype(np.float64)
        candidates = np.flatnonzero(self._admitted(scope))
        if len(candidates) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), scores
        k = min(k, len(candidates))
        top = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        return top[np.lexsort((top, -scores[top]))], scores


class ServiceTextEncoder:
    """The retriever service's text side over HTTP (``POST /v1/encode/texts``): the questioners embed answers
    with the very model that embedded the images, so the agent needs no model (and no torch) of its own."""

    def __init__(self, client: RetrieverClient, *, vector_encoding: VectorEncoding = "base64") -> None:
        self.client = client
        self.vector_encoding: VectorEncoding = vector_encoding
        """How hits' image embeddings travel (``base64``: exact float32 bytes; ``floats``: JSON lists)."""
        self.model_id: str | None = None
        """The service's model at the last encoding."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings, in order."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        response = self.client.encode_texts(list(texts))
        self.model_id = response.model
        return np.asarray(response.vectors, dtype=np.float32)

    def current_model(self) -> str:
        """The model the service runs now (``GET /readyz``)."""
        return str(self.client.ready()["model"])
