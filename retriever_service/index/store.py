"""The image index: image records and their embeddings in a Qdrant collection.

One code path for both deployments; only the client differs:

* ``QDRANT_URL`` set: a Qdrant server (``QDRANT_API_KEY`` if given), searched with ``query_points``
  (HNSW + keyword payload indexes on the filter fields);
* otherwise the embedded store under ``CHATIR_HOME`` (``settings.qdrant_path``): Qdrant's own engine
  in-process (:class:`~retriever_service.index.edge_store.EdgeStore`, which speaks the same client API), with
  the same keyword and text payload indexes and a quantised scan with exact rescoring for search.

The collection records the model id and vector size it was built with (collection metadata); opening it
for another model raises :class:`IndexMismatchError`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Self

import numpy as np

from chatir.errors import IndexMismatchError, ServiceUnavailableError
from chatir.schemas import SearchFilter
from chatir.settings import Settings
from retriever_service.index.collections import active_collection
from retriever_service.index.edge_store import EdgeStore
from retriever_service.index.embedded import open_embedded
from retriever_service.index.filters import Scope
from retriever_service.index.records import (
    CAPTION_FIELD,
    FILTER_FIELDS,
    Copy,
    ImageRecord,
    image_id_of_point,
    is_image_id,
    point_id,
)

log = logging.getLogger(__name__)

# qdrant-client's local mode (used only to read a store written by an older ChatIR, and as the server's stand-in
# in tests) warns about its speed.
warnings.filterwarnings("ignore", message="Local mode is not recommended", category=UserWarning)

META_MODEL = "chatir_model_id"
META_DIM = "chatir_dim"
META_SIDECAR_SUFFIX = "__meta"
"""Fallback for servers that drop collection metadata: a one-point collection ``<name>__meta``."""

_UPSERT_CHUNK = 256
_LOCAL_PAGE = 10_000  # the embedded store sorts all ids on every scroll call: few large pages
_SERVER_PAGE = 1_000


class FileEntry(NamedTuple):
    """What the indexer needs to know about a file already in the index."""

    id: str
    size: int | None
    mtime: float | None


class ImageIndex:
    """Image records + embeddings in Qdrant, refusing embeddings of another model.

    ``progress``: show a progress bar when an embedded store written by an older ChatIR is converted.
    ``collection``: open this very collection (default: the one serving ``CHATIR_COLLECTION``, see
    :mod:`retriever_service.index.collections`); ``client``: share an open client (the embedded store admits one
    per process), which :meth:`close` then leaves open.
    """

    def __init__(
        self,
        settings: Settings,
        model_id: str,
        dim: int,
        *,
        progress: bool = True,
        collection: str | None = None,
        client: Any = None,
    ) -> None:
        if dim < 1:
            raise ValueError(f"vector size must be positive, got {dim}")
        self.settings = settings
        self.model_id = str(model_id)
        self.dim = int(dim)
        self.server = bool(settings.qdrant_url)
        self.owns_client = client is None
        self.client = connect(settings, progress=progress) if client is None else client
        try:
            self.collection = collection or self._active_collection(settings.collection)
            self._ensure_collection()
        except BaseException:
            if self.owns_client:
                self.client.close()
            raise

    # --- opening ---------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The store, for people."""
        if self.server:
            return f"Qdrant server at {self.settings.qdrant_url}"
        return f"embedded store at {self.settings.qdrant_path}"

    @property
    def backend(self) -> str:
        """``qdrant-server``, ``embedded`` (the Edge store) or ``qdrant-client-local`` (a client passed in)."""
        if self.server:
            return "qdrant-server"
        return "embedded" if isinstance(self.client, EdgeStore) else "qdrant-client-local"

    def _active_collection(self, name: str) -> str:
        """The collection serving ``name`` (its alias, :mod:`retriever_service.index.collections`)."""
        try:
            return active_collection(self.client, name)
        except Exception as error:
            if self.server:
                raise ServiceUnavailableError(f"Cannot reach the {self.where}: {error}") from error
            raise

    def _ensure_collection(self) -> None:
        from qdrant_client import models

        try:
            exists = self.client.collection_exists(self.collection)
        except Exception as error:
            if self.server:
                raise ServiceUnavailableError(f"Cannot reach the {self.where}: {error}") from error
            raise
        if not exists:
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
                metadata={META_MODEL: self.model_id, META_DIM: self.dim},
                **self.cluster_layout(),
            )
            if self._recorded_model() is None:  # an older server that ignores metadata
                self._write_sidecar()
            log.info(
                "created collection %r in the %s for %s (%d-d)",
                self.collection,
                self.where,
                self.model_id,
                self.dim,
            )
        self._check_model()
        if self.server or isinstance(self.client, EdgeStore):
            self._ensure_payload_indexes()
        else:  # qdrant-client's local mode (a client passed in) has no payload indexes
            self._tune_local_persistence()

    def cluster_layout(self) -> dict[str, int]:
        """``shard_number`` / ``replication_factor`` for a new collection, where the settings give them (a
        Qdrant cluster spreads the shards over its nodes; the embedded store accepts and ignores them)."""
        layout = {
            "shard_number": self.settings.qdrant_shard_number,
            "replication_factor": self.settings.qdrant_replication_factor,
        }
        return {key: value for key, value in layout.items() if value is not None}

    def _recorded_model(self) -> tuple[str, int] | None:
        info = self.client.get_collection(self.collection)
        metadata = getattr(info.config, "metadata", None) or {}
        if META_MODEL in metadata:
            return str(metadata[META_MODEL]), int(metadata.get(META_DIM, -1))
        sidecar = self.collection + META_SIDECAR_SUFFIX
        if self.client.collection_exists(sidecar):
            points = self.client.retrieve(sidecar, ids=[0], with_payload=True)
            if points and points[0].payload and META_MODEL in points[0].payload:
                return str(points[0].payload[META_MODEL]), int(points[0].payload.get(META_DIM, -1))
        return None

    def _write_sidecar(self) -> None:
        from qdrant_client import models

        sidecar = self.collection + META_SIDECAR_SUFFIX
        if not self.client.collection_exists(sidecar):
            self.client.create_collection(
                sidecar, vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT)
            )
        self.client.upsert(
            sidecar,
            points=[
                models.PointStruct(
                    id=0, vector=[0.0], payload={META_MODEL: self.model_id, META_DIM: self.dim}
                )
            ],
        )

    def _vector_size(self) -> int | None:
        vectors = self.client.get_collection(self.collection).config.params.vectors
        return int(vectors.size) if hasattr(vectors, "size") else None

    def _check_model(self) -> None:
        recorded = self._recorded_model()
        size = self._vector_size()
        fix = (
            "Use another collection for this model (CHATIR_COLLECTION=<name>), or delete this one and run "
            "`chatir index` again."
        )
        if recorded is None:
            raise IndexMismatchError(
                f"The collection {self.collection!r} in the {self.where} was not created by chatir (it records no "
                f"model id), so its embeddings may come from another model than {self.model_id!r}. {fix}"
            )
        recorded_model, recorded_dim = recorded
        if (
            recorded_model != self.model_id
            or recorded_dim != self.dim
            or (size is not None and size != self.dim)
        ):
            raise IndexMismatchError(
                f"The collection {self.collection!r} in the {self.where} holds embeddings of model "
                f"{recorded_model!r} ({recorded_dim}-d), not {self.model_id!r} ({self.dim}-d); mixing two models "
                f"in one collection would make every search meaningless. Serve it with CHATIR_MODEL={recorded_model} "
                f"(after `chatir reindex` switched it: set CHATIR_MODEL to the new model), or move the index to "
                f"{self.model_id!r} without downtime: `chatir reindex --model {self.model_id}`; or give that model "
                "a collection of its own (CHATIR_COLLECTION=<name>)."
            )

    def _ensure_payload_indexes(self) -> None:
        from qdrant_client import models

        schema = self.client.get_collection(self.collection).payload_schema or {}
        for name in FILTER_FIELDS:
            if name not in schema:
                self.client.create_payload_index(
                    self.collection, name, field_schema=models.PayloadSchemaType.KEYWORD
                )
        if CAPTION_FIELD not in schema:  # captions are searchable as words (caption_search.py)
            text_index = models.TextIndexParams(
                type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD, lowercase=True
            )
            self.client.create_payload_index(self.collection, CAPTION_FIELD, field_schema=text_index)

    def _tune_local_persistence(self) -> None:
        """The embedded store commits (and fsyncs) one SQLite transaction per point: ~20 ms per image on
        this kind of disk. Write-ahead logging with ``synchronous=NORMAL`` keeps every commit safe from a
        crash or Ctrl-C of this process and only syncs at checkpoints. qdrant-client has no option for
        it, so this reaches into its local storage; if that ever changes, writes are just slower."""
        try:
            connection = self.client._client.collections[self.collection].storage.storage
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except Exception as error:  # noqa: BLE001 -- an optimisation, never a failure
            log.debug("could not tune the embedded store's SQLite persistence: %s", error)

    # --- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush and release the store (and its lock)."""
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def optimize(self) -> None:
        """Finish background work after a large write (embedded: quantise the new segments)."""
        if isinstance(self.client, EdgeStore):
            self.client.optimize(self.collection)

    # --- writes ----------------------------------------------------------------------------------
    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Insert or replace ``records`` with their embeddings (``vectors``: (n, dim))."""
        from qdrant_client import models

        vectors = self._check_vectors(vectors)
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        if not records:
            return
        payloads = [record.payload() for record in records]
        for start in range(0, len(records), _UPSERT_CHUNK):
            chunk = slice(start, start + _UPSERT_CHUNK)
            points = [
                models.PointStruct(id=record.point_id, vector=vector.tolist(), payload=payload)
                for record, vector, payload in zip(
                    records[chunk], vectors[chunk], payloads[chunk], strict=True
                )
            ]
            self.client.upsert(self.collection, points=points, wait=True)

    def update(self, record: ImageRecord) -> None:
        """Replace the payload of an indexed image (its embedding stays)."""
        self.client.overwrite_payload(
            self.collection, payload=record.payload(), points=[record.point_id], wait=True
        )

    def add_location(
        self,
        image_id: str,
        location: str,
        *,
        mtime: float | None = None,
        allowed: Sequence[str] = (),
        tags: Sequence[str] = (),
        source: str | None = None,
        text: str | None = None,
        owner: str | None = None,
    ) -> ImageRecord | None:
        """Record another copy of an indexed image (an exact duplicate) with its own visibility and metadata:
        whoever may see one copy may find the image, and is shown only the copies it may see (a copy indexed
        again replaces its metadata). None when the id is not indexed."""
        record = self.get(image_id)
        if record is None:
            return None
        updated = record.model_copy(deep=True)
        if mtime is not None:
            updated.location_mtimes[location] = float(mtime)
        copy = Copy(
            allowed=list(dict.fromkeys(allowed)),
            source=source,
            text=text,
            tags=list(dict.fromkeys(tags)),
            owner=owner,
        )
        if location == updated.uri:  # the primary: its fields are the record's own
            updated.source, updated.text, updated.owner = source, text, owner
        updated.set_copy(location, copy)
        if updated != record:
            self.update(updated)
        return updated

    def remove_locations(self, image_id: str, locations: Sequence[str]) -> ImageRecord | None:
        """Forget copies of an image (files gone), and the visibility they gave. The image is deleted with its
        last location; returns the remaining record, or None when nothing is left."""
        record = self.get(image_id)
        if record is None:
            return None
        gone = set(locations)
        remaining = [loc for loc in record.locations if loc not in gone]
        if not remaining:
            self.delete(image_id)
            return None
        if len(remaining) == len(record.locations):
            return record
        updated = record.model_copy(deep=True)
        updated.drop_copies(gone)
        self.update(updated)
        return updated

    def delete(self, ids: str | Sequence[str]) -> int:
        """Remove images by id; returns how many were indexed."""
        from qdrant_client import models

        wanted = [ids] if isinstance(ids, str) else list(ids)
        present = [r.id for r in self.get_many(wanted)]
        if not present:
            return 0
        self.client.delete(
            self.collection,
            points_selector=models.PointIdsList(points=[point_id(i) for i in present]),
            wait=True,
        )
        return len(present)

    # --- reads -----------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def get(self, image_id: str) -> ImageRecord | None:
        found = self.get_many([image_id])
        return found[0] if found else None

    def get_many(self, ids: Sequence[str]) -> list[ImageRecord]:
        """Records of the indexed ids among ``ids`` (unknown or malformed ids are skipped), in their order."""
        valid = [i.lower() for i in ids if isinstance(i, str) and is_image_id(i.lower())]
        if not valid:
            return []
        points = self.client.retrieve(self.collection, ids=[point_id(i) for i in valid], with_payload=True)
        by_id = {p.payload["id"]: ImageRecord.from_payload(p.payload) for p in points if p.payload}
        return [by_id[i] for i in dict.fromkeys(valid) if i in by_id]

    def get_vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stored embeddings of ``ids``, (len(ids), dim) in that order; ``KeyError`` for an id not indexed."""
        valid = [i.lower() for i in ids if isinstance(i, str) and is_image_id(i.lower())]
        points = self.client.retrieve(
            self.collection, ids=[point_id(i) for i in valid], with_payload=["id"], with_vectors=True
        )
        by_id = {p.payload["id"]: p.vector for p in points if p.payload}
        missing = [i for i in ids if not isinstance(i, str) or i.lower() not in by_id]
        if missing:
            raise KeyError(f"not in the index: {', '.join(map(str, missing[:5]))}")
        return np.asarray([by_id[i.lower()] for i in ids], dtype=np.float32).reshape(len(ids), self.dim)

    def search(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 10,
        filter: SearchFilter | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[tuple[ImageRecord, float]]:
        """Top-``k`` images by cosine to ``vector`` within ``filter``, never returning ``exclude_ids``."""
        return self.search_batch(np.asarray(vector, dtype=np.float32)[None, :], k, filter, exclude_ids)[0]

    def search_with_vectors(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 10,
        filter: SearchFilter | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> tuple[list[tuple[ImageRecord, float]], np.ndarray]:
        """:meth:`search` and the hits' stored embeddings, ``(len(hits), dim)`` in the same order, from the same
        query (no second lookup)."""
        points, vectors = self._points_with_vectors(vector, k, Scope.build(filter, exclude_ids), payload=True)
        return [(ImageRecord.from_payload(p.payload), float(p.score)) for p in points], vectors

    def pool(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 10,
        filter: SearchFilter | None = None,
        exclude_ids: Sequence[str] = (),
        *,
        with_vectors: bool = True,
    ) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """The top-``k`` as (ids, scores, stored embeddings ``(len(ids), dim)`` or None without
        ``with_vectors``), best first, from one query that reads no payload (an image's id is its point's):
        a re-ranker's pool without a record to build per candidate."""
        points, vectors = self._points_with_vectors(
            vector, k, Scope.build(filter, exclude_ids), payload=False, with_vectors=with_vectors
        )
        scores = np.asarray([p.score for p in points], dtype=np.float32)
        return [image_id_of_point(p.id) for p in points], scores, vectors

    def vectors_in_scope(
        self, ids: Sequence[str], filter: SearchFilter | None = None, exclude_ids: Sequence[str] = ()
    ) -> tuple[list[str], np.ndarray]:
        """(the ids among ``ids`` that are indexed and in scope, in their order, their stored embeddings
        ``(len, dim)``): unknown, malformed and out-of-scope ids are left out alike. The store applies the scope
        (the search's own filter, restricted to these ids), so no payload is read."""
        from qdrant_client import models

        scope = Scope.build(filter, exclude_ids)
        valid = list(dict.fromkeys(i.lower() for i in ids if isinstance(i, str) and is_image_id(i.lower())))
        if scope.empty or not valid:
            return [], np.zeros((0, self.dim), dtype=np.float32)
        scoped = scope.to_client_filter()
        only = models.HasIdCondition(has_id=[point_id(i) for i in valid])
        points, _ = self.client.scroll(
            self.collection,
            scroll_filter=models.Filter(
                must=[only, *(scoped.must or [])] if scoped else [only],
                must_not=scoped.must_not if scoped else None,
            ),
            limit=len(valid),
            with_payload=False,
            with_vectors=True,
        )
        found = {image_id_of_point(p.id): _plain_vector(p.vector) for p in points}
        kept = [i for i in valid if i in found]
        matrix = np.asarray([found[i] for i in kept], dtype=np.float32)
        return kept, matrix.reshape(len(kept), self.dim)

    def _points_with_vectors(
        self,
        vector: np.ndarray | Sequence[float],
        k: int,
        scope: Scope,
        *,
        payload: bool | list[str],
        with_vectors: bool = True,
    ) -> tuple[list[Any], np.ndarray | None]:
        """One query's scored points (with ``payload``) and (``with_vectors``) their stored embeddings
        ``(len(points), dim)``."""
        query = self._check_vectors(np.asarray(vector, dtype=np.float32)[None, :])
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if scope.empty:
            return [], np.zeros((0, self.dim), dtype=np.float32) if with_vectors else None
        points = self._query_points(query, k, scope, with_vectors=with_vectors, payload=payload)[0]
        if not with_vectors:
            return points, None
        vectors = [_plain_vector(p.vector) for p in points]
        return points, np.asarray(vectors, dtype=np.float32).reshape(len(points), self.dim)

    def search_batch(
        self,
        vectors: np.ndarray,
        k: int = 10,
        filter: SearchFilter | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[list[tuple[ImageRecord, float]]]:
        """:meth:`search` for several query vectors (one scope)."""
        vectors = self._check_vectors(vectors)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        scope = Scope.build(filter, exclude_ids)
        if scope.empty or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        return [
            [(ImageRecord.from_payload(p.payload), float(p.score)) for p in points]
            for points in self._query_points(vectors, k, scope)
        ]

    def caption_matches(
        self,
        words: Sequence[str],
        filter: SearchFilter | None = None,
        exclude_ids: Sequence[str] = (),
        limit: int = 2000,
    ) -> dict[str, str]:
        """``{id: caption}`` of up to ``limit`` images in scope whose caption holds one of ``words``."""
        from qdrant_client import models

        scope = Scope.build(filter, exclude_ids)
        if scope.empty or not words or limit < 1:
            return {}
        scoped = scope.to_client_filter() or models.Filter()
        text = models.FieldCondition(key=CAPTION_FIELD, match=models.MatchTextAny(text_any=" ".join(words)))
        must = list(scoped.must) if isinstance(scoped.must, list) else []
        query = models.Filter(must=[*must, text], must_not=scoped.must_not)
        found: dict[str, str] = {}
        offset = None
        while len(found) < limit:
            points, offset = self.client.scroll(
                self.collection,
                scroll_filter=query,
                limit=min(limit - len(found), _SERVER_PAGE if self.server else _LOCAL_PAGE),
                offset=offset,
                with_payload=["id", CAPTION_FIELD],
                with_vectors=False,
            )
            found.update({p.payload["id"]: p.payload[CAPTION_FIELD] for p in points if p.payload})
            if offset is None:
                break
        return found

    def _query_points(
        self,
        vectors: np.ndarray,
        k: int,
        scope: Scope,
        *,
        with_vectors: bool = False,
        payload: bool | list[str] = True,
    ) -> list[list[Any]]:
        """Search with ``query_points`` (the same call on a server and on the embedded store): each query's
        scored points that carry a payload (all of it, or the ``payload`` fields; with ``payload=False`` every
        point, with none), best first."""
        from qdrant_client import models

        query_filter = scope.to_client_filter()
        if len(vectors) == 1:
            responses = [
                self.client.query_points(
                    self.collection,
                    query=vectors[0].tolist(),
                    query_filter=query_filter,
                    limit=k,
                    with_payload=payload,
                    with_vectors=with_vectors,
                )
            ]
        else:
            requests = [
                models.QueryRequest(
                    query=vector.tolist(),
                    filter=query_filter,
                    limit=k,
                    with_payload=payload,
                    with_vector=with_vectors,
                )
                for vector in vectors
            ]
            responses = self.client.query_batch_points(self.collection, requests=requests)
        if payload is False:  # every point of an image collection is an image (its id is the point's)
            return [list(response.points) for response in responses]
        return [[p for p in response.points if p.payload] for response in responses]

    def iter_records(self) -> Iterator[ImageRecord]:
        """Every indexed record (paged scroll)."""
        for points in self._scroll(with_payload=True, with_vectors=False):
            for p in points:
                yield ImageRecord.from_payload(p.payload)

    def file_index(self) -> dict[str, FileEntry]:
        """Local file path -> (id, size, mtime) of every indexed location, for incremental indexing."""
        index: dict[str, FileEntry] = {}
        fields = ["id", "uri", "locations", "file_size", "file_mtime", "location_mtimes"]
        for points in self._scroll(with_payload=fields, with_vectors=False):
            for p in points:
                payload = p.payload or {}
                mtimes = payload.get("location_mtimes") or {}
                for location in payload.get("locations") or [payload.get("uri")]:
                    if not location or ("://" in location and not location.startswith("file://")):
                        continue
                    mtime = mtimes.get(location)
                    if mtime is None and location == payload.get("uri"):
                        mtime = payload.get("file_mtime")
                    index[location.removeprefix("file://")] = FileEntry(
                        payload["id"], payload.get("file_size"), mtime
                    )
        return index

    def _scroll(self, *, with_payload: Any, with_vectors: bool) -> Iterator[list[Any]]:
        page = _SERVER_PAGE if self.server else _LOCAL_PAGE
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection,
                limit=page,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
            if points:
                yield points
            if offset is None:
                return

    def _check_vectors(self, vectors: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f"expected vectors of shape (n, {self.dim}) for {self.model_id!r}, got {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError("vectors contain NaN or infinite values")
        if len(array) and not (np.linalg.norm(array, axis=1) > 0).all():
            raise ValueError("a zero vector has no direction: cosine search needs non-zero vectors")
        return array


def _plain_vector(vector: Any) -> Any:
    """A point's single unnamed vector (qdrant-client gives a list, or ``{"": list}`` from some calls)."""
    return vector.get("") if isinstance(vector, dict) else vector


def connect(settings: Settings, *, progress: bool = True) -> Any:
    """A client of the store ``settings`` name: a Qdrant server (``QDRANT_URL``) or the embedded store."""
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(url=settings.qdrant_url, api_key=api_key, timeout=int(settings.service_timeout_s))
    return open_embedded(settings, progress=progress)


__all__ = ["FileEntry", "ImageIndex", "connect"]
