"""The retriever service's core: the loaded model, the image index and the jobs that use them.

:class:`RetrieverService` is what ``chatir serve`` runs (the HTTP API in :mod:`retriever_service.api` is a
thin layer over it) and what the CLI uses in-process when no service runs. It is the only owner of the
embedded store. Everything here is synchronous and thread-safe: the model is shared behind one lock (the
tokenizer and the forward pass are not safe to run concurrently), the index behind another, so a search
can run between two batches of a long indexing job.

The service composes the pieces that do not need the model: its errors (:mod:`retriever_service.errors`), the
registry of indexing jobs (:mod:`retriever_service.jobs`), the image files and thumbnails on disk
(:mod:`retriever_service.files`) and uploads with the paths it may index (:mod:`retriever_service.uploads`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

from chatir.dialog import Dialog
from chatir.errors import ChatIRError, ServiceUnavailableError
from chatir.runfile import store_location
from chatir.schemas import (
    EncodeResponse,
    EncodeTextsRequest,
    EncodeTextsResponse,
    Hit,
    IndexJob,
    IndexRequest,
    LookupRequest,
    LookupResponse,
    PoolRequest,
    PoolResponse,
    SearchFilter,
    SearchRequest,
    SearchResponse,
    VectorsRequest,
    VectorsResponse,
)
from chatir.scope import SearchScope
from chatir.settings import Settings
from retriever_service import files, uploads
from retriever_service.decode import DecodeError
from retriever_service.errors import (
    InvalidRequestError,
    JobCancelledError,
    NotFoundError,
    StoreLockedError,
    is_store_lock_error,
    store_description,
    store_locked_message,
)
from retriever_service.jobs import JobRegistry, job_fields

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import numpy as np

    from retriever_service.index import ImageIndex, ImageRecord, IndexReport
    from retriever_service.models import RetrievalModel
    from retriever_service.models.captioner import Captioner

log = logging.getLogger(__name__)

THUMBNAIL_PATH = "/v1/images/{id}/thumbnail"
"""``thumbnail_url`` of a hit, relative to the service's base URL."""
IMAGE_PATH = "/v1/images/{id}"
"""The image itself, relative to the service's base URL (a hit's ``uri`` when no copy it may see has a path)."""

UPLOAD_SOURCE = "upload"
"""Default ``source`` of files uploaded through ``POST /v1/index``."""


class _Serialized:
    """Proxy that runs the named methods of ``target`` (all public callables when ``names`` is None)
    under ``lock``; attributes pass through. Lets jobs written for a plain model/index share them."""

    def __init__(self, target: Any, lock: threading.RLock, names: frozenset[str] | None = None) -> None:
        self._target = target
        self._lock = lock
        self._names = names

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if (
            not callable(value)
            or name.startswith("_")
            or (self._names is not None and name not in self._names)
        ):
            return value
        lock = self._lock

        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return value(*args, **kwargs)

        return locked


_MODEL_METHODS = frozenset(
    {
        "encode_images",
        "encode_texts",
        "encode_dialogs",
        "dialog_text",
        "tokenize",
        "text_features",
        "text_vectors",
        "image_features",
    }
)


class RetrieverService:
    """The loaded model + the open image index, and everything the API does with them."""

    def __init__(
        self, settings: Settings, model: RetrievalModel, index: ImageIndex, captioner: Captioner | None = None
    ) -> None:
        self.settings = settings
        self.captioner = _Serialized(captioner, threading.RLock()) if captioner is not None else None
        self._model_lock = threading.RLock()
        self._index_lock = threading.RLock()
        self.model = _Serialized(model, self._model_lock, _MODEL_METHODS)
        self.index = _Serialized(index, self._index_lock)
        self._raw_index = index
        self._jobs = JobRegistry()
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatir-index")
        self._closed = False
        self._batcher = _text_batcher(settings, model, self._model_lock)
        self._store_location = store_location(settings)  # part of every pool's embedding space, resolved once

    # --- life cycle ------------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings) -> RetrieverService:
        """Load ``settings.model`` and open the index (raises :class:`ChatIRError` with a clear message)."""
        from retriever_service.index import ImageIndex
        from retriever_service.models import load_model
        from retriever_service.models.captioner import load_captioner
        from retriever_service.models.fastpath import apply_configured_fastpath

        model = load_model(settings.model, device=settings.device, settings=settings)
        apply_configured_fastpath(model, settings)
        captioner = load_captioner(settings)
        try:
            index = ImageIndex(settings, model.model_id, model.dim)
        except ChatIRError:
            raise
        except Exception as error:  # qdrant-client raises RuntimeError for a held lock
            if is_store_lock_error(error):
                raise StoreLockedError(store_locked_message(settings)) from error
            raise ServiceUnavailableError(
                f"Cannot open the {store_description(settings)}: {error}"
            ) from error
        service = cls(settings, model, index, captioner)
        if settings.qdrant_url:  # another process may switch the server's alias (`chatir reindex`): follow it
            from retriever_service.model_switch import ActiveFollower

            ActiveFollower(service, service._stop).start()
        return service

    def close(self) -> None:
        """Stop accepting jobs, stop the running one after its current file, close the index."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._batcher is not None:
            self._batcher.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._jobs.fail_queued("the service stopped before the job started")
        close = getattr(self._raw_index, "close", None)
        if callable(close):
            with self._index_lock:
                close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model_id(self) -> str:
        return str(self.model.model_id)

    def count(self) -> int:
        """Number of images in the index; raises :class:`ServiceUnavailableError` when it is unreachable."""
        return int(self._store_call(self.index.count))

    # --- search ----------------------------------------------------------------------------------
    def encode(self, dialog: Dialog) -> EncodeResponse:
        """The dialog's embedding (L2-normalised) and the text actually encoded."""
        text, vector = self._encode_dialog(dialog)
        return EncodeResponse(vector=[float(x) for x in vector], model=self.model_id, text=text)

    def encode_texts(self, request: EncodeTextsRequest) -> EncodeTextsResponse:
        """Plain texts' embeddings (L2-normalised), in order."""
        vectors = self.model.encode_texts(request.texts)
        return EncodeTextsResponse(vectors=vectors.tolist(), model=self.model_id)

    def search(self, request: SearchRequest) -> SearchResponse:
        """Top-k images for the dialog, filters and exclusions applied inside the vector query."""
        started = time.perf_counter()
        from retriever_service.models.batching import encode_one

        model, index, batcher = self.model, self.index, self._batcher  # one set, even if a reindex switches
        _, vector = encode_one(batcher, model, request.dialog)
        results, vectors = self._ranked(index, request, vector, with_vectors=request.with_vectors)
        hits = [self._hit(record, score, request.filter) for record, score in results]
        for hit in hits if request.with_vectors else ():
            if (image_vector := vectors.get(hit.id)) is None:
                continue
            if request.vector_encoding == "base64":  # exact float32 bytes: no float per value to build
                hit.vector_base64 = _matrix_base64(image_vector)
            else:
                hit.vector = image_vector.tolist()
        took_ms = (time.perf_counter() - started) * 1000.0
        return SearchResponse(hits=hits, model=str(model.model_id), took_ms=round(took_ms, 3))

    def search_pool(self, request: PoolRequest) -> PoolResponse:
        """The top-k as ids, scores and (``with_vectors``) one embedding matrix: :meth:`search`'s order, without
        building hits."""
        import numpy as np

        started = time.perf_counter()
        from retriever_service.models.batching import encode_one

        model, index, batcher = self.model, self.index, self._batcher
        _, vector = encode_one(batcher, model, request.dialog)
        matrix: np.ndarray | None
        if not self.caption_search and hasattr(self._raw_index, "pool"):  # ids (and vectors) only: no records
            ids, scores, matrix = self._store_call(
                index.pool, vector, **_query(request), with_vectors=request.with_vectors
            )
        else:  # fused with caption matches, or an index without the call: the search's own results
            results, vectors = self._ranked(index, request, vector, with_vectors=request.with_vectors)
            ids = [record.id for record, _ in results]
            scores = np.asarray([score for _, score in results], dtype=np.float32)
            matrix = np.stack([vectors[i] for i in ids]) if ids and request.with_vectors else None
        took_ms = (time.perf_counter() - started) * 1000.0
        return PoolResponse(
            ids=ids,
            scores=[float(x) for x in scores],
            dim=int(model.dim),
            vectors_base64=_matrix_base64(matrix),
            space=_space(self._store_location, index, model),
            model=str(model.model_id),
            took_ms=round(took_ms, 3),
        )

    def vectors(self, request: VectorsRequest) -> VectorsResponse:
        """Stored embeddings of the ids the request's scope admits, in the order asked; any other id is left out,
        like an unknown one."""
        model, index = self.model, self.index
        ids, matrix = self._store_call(
            index.vectors_in_scope, list(request.ids), request.filter, list(request.exclude_ids)
        )
        return VectorsResponse(
            ids=ids,
            dim=int(model.dim),
            vectors_base64=_matrix_base64(matrix),
            space=_space(self._store_location, index, model),
            model=str(model.model_id),
        )

    def lookup(self, request: LookupRequest) -> LookupResponse:
        """Full hits (score 0) for the ids the request's scope admits, in the order asked; any other id is
        left out, like an unknown one."""
        scope = SearchScope.from_filter(request.filter, request.exclude_ids)
        records = self._store_call(self.index.get_many, list(request.ids)) if not scope.is_empty else []
        hits = [
            self._hit(record, 0.0, request.filter)
            for record in records
            if scope.admits(
                allowed=record.allowed, source=record.source, tags=record.tags, image_id=record.id
            )
        ]
        return LookupResponse(hits=hits, model=self.model_id)

    def _ranked(
        self, index: Any, request: SearchRequest | PoolRequest, vector: Any, *, with_vectors: bool
    ) -> tuple[list[tuple[ImageRecord, float]], dict[str, np.ndarray]]:
        """The search's (record, score) results, best first, and (``with_vectors``) their embeddings by id."""
        query = _query(request)
        vectors: dict[str, np.ndarray] = {}
        if with_vectors and hasattr(self._raw_index, "search_with_vectors"):  # one query brings both
            results, matrix = self._store_call(index.search_with_vectors, vector, **query)
            vectors = {record.id: row for (record, _), row in zip(results, matrix, strict=True)}
        else:
            results = self._store_call(index.search, vector, **query)
        if self.caption_search:
            results = self._with_caption_matches(index, request, vector, results)
        missing = [record.id for record, _ in results if record.id not in vectors]  # e.g. found by caption
        if with_vectors and missing:
            vectors.update(self._store_call(self._vectors, missing))
        return results, vectors

    @property
    def caption_search(self) -> bool:
        """Whether stored captions are searched as text (CHATIR_CAPTION_SEARCH; default: when captioning)."""
        if self.settings.caption_search is not None:
            return self.settings.caption_search
        return self.settings.captioner is not None

    def _with_caption_matches(
        self,
        index: Any,
        request: SearchRequest | PoolRequest,
        vector: Any,
        dense: list[tuple[ImageRecord, float]],
    ) -> list[tuple[ImageRecord, float]]:
        """``dense`` fused with the images whose captions hold the dialog's words (caption_search.py);
        every result keeps its cosine to the dialog."""
        from retriever_service.index import caption_search

        words = caption_search.dialog_terms(request.dialog)
        captions = self._store_call(
            index.caption_matches,
            words,
            filter=request.filter,
            exclude_ids=list(request.exclude_ids),
            limit=caption_search.MAX_SCANNED,
        )
        lexical = [i for i, _ in caption_search.rank_by_terms(captions, words)]
        if not lexical:
            return dense
        by_id = {record.id: (record, score) for record, score in dense}
        order = caption_search.fuse(list(by_id), lexical, request.k)
        new = [i for i in order if i not in by_id]
        if new:
            records = self._store_call(index.get_many, new)  # a record deleted meanwhile is skipped
            vectors = self._store_call(index.get_vectors, [r.id for r in records])
            for record, image_vector in zip(records, vectors, strict=True):
                by_id[record.id] = (record, float(image_vector @ vector))
        return [by_id[i] for i in order if i in by_id]

    def _encode_dialog(self, dialog: Dialog) -> tuple[str, Any]:
        """The dialog's text and embedding: micro-batched with concurrent requests unless batching is off."""
        from retriever_service.models.batching import encode_one

        return encode_one(self._batcher, self.model, dialog)

    def _vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Stored image embeddings (float32) by id (for ``with_vectors``)."""
        import numpy as np

        from retriever_service.index import point_id

        getter = getattr(self._raw_index, "get_vectors", None)
        if callable(getter):  # preferred, when the index offers it
            with self._index_lock:
                matrix = np.asarray(getter(ids), dtype=np.float32)
            return dict(zip(ids, matrix, strict=True))
        index = self._raw_index
        with self._index_lock:
            points = index.client.retrieve(
                index.collection, ids=[point_id(i) for i in ids], with_payload=["id"], with_vectors=True
            )
        return {p.payload["id"]: np.asarray(p.vector, dtype=np.float32) for p in points if p.payload}

    @staticmethod
    def _hit(record: ImageRecord, score: float, scope: SearchFilter | None = None) -> Hit:
        """A hit as the caller may see it: the location, source, text and tags of a copy its ``scope`` shows (an
        image posted in two channels never tells one channel's caller the other channel's path or message)."""
        visible = record.visible_copy(scope)
        if visible is None:  # found through a copy indexed before copies were kept: only what is not private
            location, copy = IMAGE_PATH.format(id=record.id), None
        else:
            location, copy = visible
        return Hit(
            id=record.id,
            score=float(score),
            uri=str(location),
            thumbnail_url=THUMBNAIL_PATH.format(id=record.id),
            width=record.width,
            height=record.height,
            mime=record.mime,
            source=copy.source if copy else None,
            text=copy.text if copy else None,
            tags=list(copy.tags) if copy else [],
            caption=record.caption,  # from the pixels, the same for every copy
        )

    # --- images ----------------------------------------------------------------------------------
    def record(self, image_id: str) -> ImageRecord:
        _check_id(image_id)
        record = self._store_call(self.index.get, image_id.lower())
        if record is None:
            raise NotFoundError(f"No image with id {image_id!r} in the index.")
        return record

    def visible_record(self, image_id: str, allowed: list[str] | None = None) -> ImageRecord:
        """:meth:`record`, and when ``allowed`` is given, only if the image shares one of those groups.

        An image outside the caller's scope is "not found" (not "forbidden"): its existence is not told."""
        record = self.record(image_id)
        if allowed is not None and not set(record.allowed or ()) & set(allowed):
            raise NotFoundError(f"No image with id {image_id!r} in the index.")
        return record

    def image_file(self, image_id: str, allowed: list[str] | None = None) -> tuple[Path, str]:
        """The original file of an image (first location still on disk that the caller may see) and its mime."""
        return self._image_file(self.visible_record(image_id, allowed), allowed)

    def _image_file(self, record: ImageRecord, allowed: list[str] | None = None) -> tuple[Path, str]:
        image_id = record.id
        path = files.first_local_file(record, files.visible_locations(record, allowed))
        if path is None:
            raise NotFoundError(
                f"Image {image_id!r} is indexed but none of its files is readable by the service "
                f"(primary copy: {record.uri})."
            )
        mime = record.mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path, mime

    def thumbnail(self, image_id: str, size: int | None = None, allowed: list[str] | None = None) -> Path:
        """A JPEG whose longest side is ``size`` (at most; small images are not enlarged), cached."""
        size = int(size or self.settings.thumbnail_size)
        record = self.visible_record(image_id, allowed)  # a deleted image has no thumbnail, even a cached one
        cached = files.thumbnail_file(self.settings.thumbnails_dir, record.id, size)
        if cached.is_file():
            return cached
        path, _ = self._image_file(record)  # the same bytes whichever copy: the thumbnail is shared
        try:
            files.write_thumbnail(path, cached, size)
        except (OSError, DecodeError) as error:  # the file changed since it was indexed
            raise NotFoundError(
                f"Image {record.id!r}: its file {path} is no longer a readable image ({error})."
            ) from error
        return cached

    def delete(self, image_id: str) -> ImageRecord:
        """Remove an image from the index (and its thumbnails, and its file when it was an upload)."""
        record = self.record(image_id)
        self._store_call(self.index.delete, [record.id])
        files.remove_thumbnails(self.settings.thumbnails_dir, record.id)
        uploads.remove_uploaded_copies(self.uploads_dir, files.record_locations(record))
        return record

    # --- uploads ---------------------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return uploads.uploads_dir(self.settings)

    def save_upload(
        self, filename: str | None, stream: IO[bytes], budget: int | None = None
    ) -> tuple[Path, int]:
        """Copy an uploaded file under ``CHATIR_HOME/uploads/<sha256>/<name>``; returns (path, size).

        ``budget`` caps the bytes accepted (:class:`PayloadTooLargeError` beyond); identical bytes land
        in the same folder, so re-uploading a file stores it once.
        """
        return uploads.save_upload(self.settings, filename, stream, budget)

    # --- indexing jobs ---------------------------------------------------------------------------
    def submit_index(self, request: IndexRequest) -> IndexJob:
        """Queue an indexing job (run in a background thread, one at a time); returns its first state."""
        if self._closed:
            raise ServiceUnavailableError("The service is shutting down.")
        for position, raw in enumerate(request.paths):
            uploads.check_index_root(self.settings, raw, position)
            if not Path(raw).expanduser().exists():  # usable: the root check resolved it
                raise InvalidRequestError(
                    f"Path not found on the service's machine: {raw}", field=f"paths.{position}"
                )
        job = self._jobs.add()
        self._executor.submit(self._run_job, job.id, request)
        return job.model_copy(deep=True)

    def job(self, job_id: str) -> IndexJob:
        return self._jobs.get(job_id)

    def wait_for_job(self, job_id: str, timeout_s: float = 60.0) -> IndexJob:
        """Block until a job is done or failed (for tests and the in-process CLI)."""
        return self._jobs.wait(job_id, timeout_s)

    def run_index(
        self, request: IndexRequest, progress: bool | Callable[[int, int], None] = True
    ) -> IndexReport:
        """Index ``request.paths`` now (in this thread) and return the indexer's report.

        ``progress``: a tqdm bar (True), none (False) or a ``(done, total)`` callback."""
        from retriever_service.index import index_paths

        return index_paths(
            [Path(p).expanduser() for p in request.paths],
            model=self.model,
            index=self.index,
            source=request.source,
            allowed=list(request.allowed),
            tags=list(request.tags),
            owner=request.owner,
            text=request.text,
            prune=request.prune,
            progress=progress,
            batch_size=self.settings.batch_size,
            captioner=self.captioner,
            shard=request.shard,
        )

    def _run_job(self, job_id: str, request: IndexRequest) -> None:
        if self._stop.is_set():
            self._update(job_id, state="failed", error="the service stopped before the job started")
            return
        self._update(job_id, state="running")

        def progress(done: int, total: int) -> None:
            self._update(job_id, done=done, total=total)
            if self._stop.is_set():  # shutting down: stop between files, keep what is stored
                raise JobCancelledError(
                    "The service stopped during the job; images already stored are kept, "
                    "submit the job again to index the rest."
                )

        try:
            report = self.run_index(request, progress=progress)
            self._discard_rejected_uploads(report)
        except JobCancelledError as error:
            self._update(job_id, state="failed", error=str(error))
            return
        except Exception as error:  # the job reports it; the service keeps running
            log.exception("indexing job %s failed", job_id)
            message = str(error) if isinstance(error, ChatIRError) else f"{type(error).__name__}: {error}"
            self._update(job_id, state="failed", error=message)
            return
        for skipped in report.skipped:  # Slack files are sent fire-and-forget: the log is where admins look
            log.info("job %s (%s) refused %s: %s", job_id, request.source, skipped.path, skipped.reason)
        self._update(job_id, state="done", **job_fields(report))

    def _discard_rejected_uploads(self, report: Any) -> None:
        """Uploaded files the indexer rejected (not an image, unreadable) are deleted: nothing refers to them."""
        uploads.discard_rejected_uploads(self.uploads_dir, report)

    def _update(self, job_id: str, **fields: Any) -> None:
        self._jobs.update(job_id, **fields)

    # --- changing the model (retriever_service.model_switch) -------------------------------------
    def reindex(
        self, model_name: str, progress: Callable[[int, int], None] | None = None, *, drop_old: bool = False
    ) -> Any:
        """Rebuild the index for ``model_name`` while this one keeps serving, switch, serve the new model."""
        from retriever_service.model_switch import run_reindex

        return run_reindex(self, model_name, progress, drop_old=drop_old)

    def submit_reindex(self, model_name: str, *, drop_old: bool = False) -> IndexJob:
        """:meth:`reindex` as a job (it waits for indexing jobs queued before it; later ones wait for it)."""
        if self._closed:
            raise ServiceUnavailableError("The service is shutting down.")
        job = self._jobs.add()
        self._executor.submit(self._run_reindex_job, job.id, model_name, drop_old)
        return job.model_copy(deep=True)

    def _run_reindex_job(self, job_id: str, model_name: str, drop_old: bool) -> None:
        self._update(job_id, state="running")

        def progress(done: int, total: int) -> None:
            self._update(job_id, done=done, total=total)
            if self._stop.is_set():
                raise JobCancelledError("The service stopped during the reindex; run it again to resume.")

        try:
            report = self.reindex(model_name, progress, drop_old=drop_old)
        except Exception as error:  # the job reports it; the service keeps serving the old index
            if not isinstance(error, ChatIRError):
                log.exception("reindex job %s failed", job_id)
            message = str(error) if isinstance(error, ChatIRError) else f"{type(error).__name__}: {error}"
            self._update(job_id, state="failed", error=message)
            return
        skipped = [{"path": m.path, "reason": m.reason} for m in report.missing]
        self._update(
            job_id,
            state="done",
            added=report.embedded,
            unchanged=report.resumed,
            pruned=report.removed,
            skipped=skipped,
        )

    def adopt(self, model: RetrievalModel, index: ImageIndex) -> None:
        """Serve ``model`` and ``index`` from now on (one step under both locks) and close the old index; the
        new model gets its own fast path and micro-batcher, and the old batcher finishes what it was given."""
        from retriever_service.models.fastpath import apply_configured_fastpath

        apply_configured_fastpath(model, self.settings)
        batcher = _text_batcher(self.settings, model, self._model_lock)
        with self._model_lock, self._index_lock:
            old_batcher, self._batcher = self._batcher, batcher
            old = self._raw_index
            if getattr(index, "client", None) is getattr(old, "client", None):
                old.owns_client, index.owns_client = False, True  # the shared embedded client moves on
            self.model = _Serialized(model, self._model_lock, _MODEL_METHODS)
            self.index = _Serialized(index, self._index_lock)
            self._raw_index = index
            old.close()
        if old_batcher is not None:
            old_batcher.close(drain=True)
        log.info("now serving model %s from collection %r", model.model_id, index.collection)

    # --- helpers ---------------------------------------------------------------------------------
    def _store_call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run an index call; a store that cannot be reached becomes :class:`ServiceUnavailableError`."""
        try:
            return function(*args, **kwargs)
        except ChatIRError:
            raise
        except (ValueError, TypeError, KeyError):
            raise
        except Exception as error:
            raise ServiceUnavailableError(
                f"The {store_description(self.settings)} is unavailable: {type(error).__name__}: {error}"
            ) from error


# --- module helpers --------------------------------------------------------------------------------
def _query(request: SearchRequest | PoolRequest) -> dict[str, Any]:
    """The index query's arguments of a search or pool request."""
    return {"k": request.k, "filter": request.filter, "exclude_ids": list(request.exclude_ids)}


def _matrix_base64(matrix: np.ndarray | None) -> str:
    """A vector or (n, dim) matrix as the base64 of its little-endian float32 bytes (empty for None)."""
    import numpy as np

    if matrix is None:
        return ""
    return base64.b64encode(np.ascontiguousarray(matrix, dtype="<f4").tobytes()).decode("ascii")


def _space(store: str, index: Any, model: Any) -> str:
    """The embedding space a pool's vectors live in: the store (its location), the collection that serves and its
    model. An image id is a hash of the image's bytes, so within one space its stored embedding never changes."""
    key = f"{store}|{index.collection}|{model.model_id}|{model.dim}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _text_batcher(settings: Settings, model: Any, lock: threading.RLock) -> Any:
    """The micro-batcher of dialog encodes (``CHATIR_ENCODE_MAX_BATCH`` > 1), or None."""
    if settings.encode_max_batch <= 1:
        return None
    from retriever_service.models.batching import TextBatcher

    return TextBatcher(
        model, lock, window_ms=settings.encode_batch_window_ms, max_batch=settings.encode_max_batch
    )


_ID_PATTERN = re.compile(r"^[0-9a-fA-F]{32}$")


def _check_id(image_id: str) -> None:
    if not _ID_PATTERN.match(image_id):
        raise NotFoundError(f"No image with id {image_id!r}: ids are hexadecimal content hashes.")


__all__ = [
    "IMAGE_PATH",
    "THUMBNAIL_PATH",
    "UPLOAD_SOURCE",
    "RetrieverService",
]
