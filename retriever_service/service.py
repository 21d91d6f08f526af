"""The retriever service's core: the loaded model, the image index and the jobs that use them.

:class:`RetrieverService` is what ``chatir serve`` runs (the HTTP API in :mod:`retriever_service.api` is a
thin layer over it) and what the CLI uses in-process when no service runs. It is the only owner of the
embedded store. Everything here is synchronous and thread-safe: the model is shared behind one lock (the
tokenizer and the forward pass are not safe to run concurrently), the index behind another, so a search
can run between two batches of a long indexing job.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

from chatir.dialog import Dialog
from chatir.errors import ChatIRError, ServiceUnavailableError
from chatir.schemas import (
    EncodeResponse,
    EncodeTextsRequest,
    EncodeTextsResponse,
    Hit,
    IndexJob,
    IndexRequest,
    SearchFilter,
    SearchRequest,
    SearchResponse,
)
from chatir.settings import Settings

if TYPE_CHECKING:  # heavy imports stay out of module import time
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

_FINISHED_JOBS_KEPT = 200
_COPY_CHUNK = 1 << 20


class NotFoundError(ChatIRError):
    """An image, file or job that does not exist (HTTP 404)."""


class InvalidRequestError(ChatIRError):
    """A request that is well-formed but cannot be honoured (HTTP 422); ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ForbiddenError(ChatIRError):
    """A request outside what the service is configured to allow (HTTP 403)."""


class PayloadTooLargeError(ChatIRError):
    """An upload over ``settings.max_upload_mb`` (HTTP 413)."""


class ServiceStartingError(ServiceUnavailableError):
    """The service is still loading its model (HTTP 503 with ``detail.state == "starting"``, ``Retry-After``)."""


class JobCancelledError(ChatIRError):
    """An indexing job stopped because the service is shutting down."""


class StoreLockedError(ServiceUnavailableError):
    """The embedded store is held by another process (normally a running ``chatir serve``)."""


def store_description(settings: Settings) -> str:
    """Where the vectors live, for people: the server URL or the embedded folder."""
    if settings.qdrant_url:
        return f"Qdrant server at {settings.qdrant_url}"
    return f"embedded store at {settings.qdrant_path}"


def store_locked_message(settings: Settings) -> str:
    """Who holds the store and what to do, from its run file when the holder wrote one."""
    from chatir import runfile

    held = runfile.holder(settings)
    if held is None:
        return (
            f"The {store_description(settings)} is in use by another process (normally a running `chatir serve` "
            "or `chatir demo`). Stop that process, or use its HTTP API (CHATIR_SERVICE_URL)."
        )
    return (
        f"The {store_description(settings)} is in use by `chatir {held.command}` (pid {held.pid}), which serves "
        f"it at {held.url}. Use that service (CHATIR_SERVICE_URL={held.url}), or stop it first."
    )


def is_store_lock_error(error: BaseException) -> bool:
    """True for qdrant-client's "already accessed by another instance" (and similar lock errors)."""
    text = str(error).lower()
    return "already accessed" in text or ("lock" in text and "storage" in text)


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
        self._jobs: dict[str, IndexJob] = {}
        self._jobs_lock = threading.Lock()
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatir-index")
        self._closed = False

    # --- life cycle ------------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings) -> RetrieverService:
        """Load ``settings.model`` and open the index (raises :class:`ChatIRError` with a clear message)."""
        from retriever_service.index import ImageIndex
        from retriever_service.models import load_model
        from retriever_service.models.captioner import load_captioner

        model = load_model(settings.model, device=settings.device, settings=settings)
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
        return cls(settings, model, index, captioner)

    def close(self) -> None:
        """Stop accepting jobs, stop the running one after its current file, close the index."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._jobs_lock:
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state, job.error = "failed", "the service stopped before the job started"
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
        text = self.model.dialog_text(dialog)
        vector = self.model.encode_texts([text])[0]
        return EncodeResponse(vector=[float(x) for x in vector], model=self.model_id, text=text)

    def encode_texts(self, request: EncodeTextsRequest) -> EncodeTextsResponse:
        """Plain texts' embeddings (L2-normalised), in order."""
        vectors = self.model.encode_texts(request.texts)
        return EncodeTextsResponse(vectors=vectors.tolist(), model=self.model_id)

    def search(self, request: SearchRequest) -> SearchResponse:
        """Top-k images for the dialog, filters and exclusions applied inside the vector query."""
        started = time.perf_counter()
        vector = self.model.encode_dialogs([request.dialog])[0]
        results = self._store_call(
            self.index.search,
            vector,
            k=request.k,
            filter=request.filter,
            exclude_ids=list(request.exclude_ids),
        )
        hits = [self._hit(record, score, request.filter) for record, score in results]
        if request.with_vectors and hits:
            vectors = self._store_call(self._vectors, [hit.id for hit in hits])
            for hit in hits:
                hit.vector = vectors.get(hit.id)
        took_ms = (time.perf_counter() - started) * 1000.0
        return SearchResponse(hits=hits, model=self.model_id, took_ms=round(took_ms, 3))

    def _vectors(self, ids: list[str]) -> dict[str, list[float]]:
        """Stored image embeddings by id (for ``with_vectors``)."""
        from retriever_service.index import point_id

        getter = getattr(self._raw_index, "get_vectors", None)
        if callable(getter):  # preferred, when the index offers it
            with self._index_lock:
                return {i: [float(x) for x in v] for i, v in zip(ids, getter(ids), strict=True)}
        index = self._raw_index
        with self._index_lock:
            points = index.client.retrieve(
                index.collection, ids=[point_id(i) for i in ids], with_payload=["id"], with_vectors=True
            )
        return {p.payload["id"]: [float(x) for x in p.vector] for p in points if p.payload}

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
        path = _first_local_file(record, _visible_locations(record, allowed))
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
        cached = Path(self.settings.thumbnails_dir) / f"{record.id}_{size}.jpg"
        if cached.is_file():
            return cached
        path, _ = self._image_file(record)  # the same bytes whichever copy: the thumbnail is shared
        try:
            _write_thumbnail(path, cached, size)
        except OSError as error:  # the file changed since it was indexed
            raise NotFoundError(
                f"Image {record.id!r}: its file {path} is no longer a readable image ({error})."
            ) from error
        return cached

    def delete(self, image_id: str) -> ImageRecord:
        """Remove an image from the index (and its thumbnails, and its file when it was an upload)."""
        record = self.record(image_id)
        self._store_call(self.index.delete, [record.id])
        for thumb in Path(self.settings.thumbnails_dir).glob(f"{record.id}_*.jpg"):
            thumb.unlink(missing_ok=True)
        uploads = self.uploads_dir.resolve()
        for location in _locations(record):
            path = Path(location)
            if path.is_file() and path.resolve().is_relative_to(uploads):
                path.unlink(missing_ok=True)
                _remove_empty_dirs(path.parent, stop=uploads)
        return record

    # --- uploads ---------------------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return Path(self.settings.home) / "uploads"

    def save_upload(
        self, filename: str | None, stream: IO[bytes], budget: int | None = None
    ) -> tuple[Path, int]:
        """Copy an uploaded file under ``CHATIR_HOME/uploads/<sha256>/<name>``; returns (path, size).

        ``budget`` caps the bytes accepted (:class:`PayloadTooLargeError` beyond); identical bytes land
        in the same folder, so re-uploading a file stores it once.
        """
        budget = self.settings.max_upload_mb * (1 << 20) if budget is None else budget
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=self.uploads_dir, prefix=".part-", delete=False) as tmp:
            try:
                while chunk := stream.read(_COPY_CHUNK):
                    size += len(chunk)
                    if size > budget:
                        raise PayloadTooLargeError(
                            f"Upload too large: more than {self.settings.max_upload_mb} MB in all."
                        )
                    digest.update(chunk)
                    tmp.write(chunk)
            except BaseException:
                tmp.close()
                Path(tmp.name).unlink(missing_ok=True)
                raise
        target_dir = self.uploads_dir / digest.hexdigest()[:32]
        target_dir.mkdir(exist_ok=True)
        target = target_dir / _safe_filename(filename)
        os.replace(tmp.name, target)
        return target, size

    # --- indexing jobs ---------------------------------------------------------------------------
    def submit_index(self, request: IndexRequest) -> IndexJob:
        """Queue an indexing job (run in a background thread, one at a time); returns its first state."""
        if self._closed:
            raise ServiceUnavailableError("The service is shutting down.")
        for position, raw in enumerate(request.paths):
            self._check_index_root(raw, position)
            if not Path(raw).expanduser().exists():  # usable: the root check resolved it
                raise InvalidRequestError(
                    f"Path not found on the service's machine: {raw}", field=f"paths.{position}"
                )
        job = IndexJob(id=uuid.uuid4().hex, state="queued")
        with self._jobs_lock:
            self._jobs[job.id] = job
            self._forget_old_jobs()
        self._executor.submit(self._run_job, job.id, request)
        return job.model_copy(deep=True)

    def _check_index_root(self, raw: str, position: int) -> None:
        """Paths sent over HTTP must lie in ``CHATIR_INDEX_ROOTS`` (or be this service's own uploads).

        Checked on the resolved path, so ``..`` and symbolic links cannot step outside a root. A path the
        machine cannot use at all (a NUL byte, ``~nosuchuser``) is a bad request, never a server error."""
        try:
            path = Path(raw).expanduser().resolve()
        except (ValueError, RuntimeError, OSError) as error:  # NUL byte; unknown user in "~user"; loops
            raise InvalidRequestError(
                f"paths.{position}: {raw!r} is not a usable path ({error})", field=f"paths.{position}"
            ) from None
        roots = [self.uploads_dir, *self.settings.index_roots]
        if any(path.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
            return
        if not self.settings.index_roots:
            raise ForbiddenError(
                f"Indexing by path is off for this service (paths.{position}: {raw}). Upload the files "
                "instead (multipart POST /v1/index), or start the service with CHATIR_INDEX_ROOTS set to "
                "the folders it may index."
            )
        raise ForbiddenError(
            f"paths.{position}: {raw} is outside the folders this service may index "
            f"(CHATIR_INDEX_ROOTS: {', '.join(str(r) for r in self.settings.index_roots)})."
        )

    def job(self, job_id: str) -> IndexJob:
        with self._jobs_lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFoundError(
                    f"No indexing job with id {job_id!r} (jobs live until the service restarts)."
                )
            return job.model_copy(deep=True)

    def wait_for_job(self, job_id: str, timeout_s: float = 60.0) -> IndexJob:
        """Block until a job is done or failed (for tests and the in-process CLI)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job.state in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.05)

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
        self._update(job_id, state="done", **_job_fields(report))

    def _discard_rejected_uploads(self, report: Any) -> None:
        """Uploaded files the indexer rejected (not an image, unreadable) are deleted: nothing refers to them."""
        uploads = self.uploads_dir.resolve()
        for skipped in report.skipped:
            path = Path(skipped.path)
            try:
                if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(uploads):
                    path.unlink()
                    _remove_empty_dirs(path.parent, stop=uploads)
            except OSError as error:  # already gone, or not ours to delete: leave it
                log.info("could not remove rejected upload %s: %s", path, error)

    def _update(self, job_id: str, **fields: Any) -> None:
        with self._jobs_lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = job.model_copy(update=fields)

    def _forget_old_jobs(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for job in finished[: max(0, len(finished) - _FINISHED_JOBS_KEPT)]:
            self._jobs.pop(job.id, None)

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
_ID_PATTERN = re.compile(r"^[0-9a-fA-F]{32}$")


def _check_id(image_id: str) -> None:
    if not _ID_PATTERN.match(image_id):
        raise NotFoundError(f"No image with id {image_id!r}: ids are hexadecimal content hashes.")


def _locations(record: Any) -> list[str]:
    seen: list[str] = []
    for location in [record.uri, *(getattr(record, "locations", None) or [])]:
        if location and str(location) not in seen:
            seen.append(str(location))
    return seen


def _visible_locations(record: ImageRecord, allowed: list[str] | None) -> list[str]:
    """The locations of ``record`` whose copy a caller with visibility groups ``allowed`` may see (all when
    ``allowed`` is None: a trusted caller)."""
    if allowed is None:
        return _locations(record)
    scope = SearchFilter(allowed=allowed)
    return [
        loc for loc in _locations(record) if (c := record.copies.get(loc)) is not None and c.visible_to(scope)
    ]


def _first_local_file(record: Any, locations: list[str] | None = None) -> Path | None:
    """The first location of ``record`` (or of ``locations``) that still holds the indexed bytes.

    A location is used only when it is a regular file, not a symbolic link, and its content still hashes to the
    record's id: a file replaced after indexing (by other bytes, or by a link to ``/etc/passwd``) is never read
    or served under the old id."""
    from retriever_service.index.records import file_content_id

    for location in _locations(record) if locations is None else locations:
        if "://" in location and not location.startswith("file://"):
            continue
        path = Path(location.removeprefix("file://"))
        if path.is_symlink() or not path.is_file() or not os.access(path, os.R_OK):
            continue
        try:
            if file_content_id(path) == record.id:
                return path
        except OSError:
            continue
    return None


def _write_thumbnail(source: Path, target: Path, size: int) -> None:
    from PIL import Image, ImageOps

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at reduced scale when possible
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
        else:
            image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".thumb-", suffix=".jpg")
        try:
            with os.fdopen(fd, "wb") as handle:
                image.save(handle, format="JPEG", quality=85, optimize=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _safe_filename(name: str | None) -> str:
    base = Path(name or "").name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    return base[:120]


def _remove_empty_dirs(folder: Path, stop: Path) -> None:
    folder = folder.resolve()
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _job_fields(report: Any) -> dict[str, Any]:
    """IndexJob fields from the indexer's report (tolerant of its exact shape)."""
    fields: dict[str, Any] = {}
    for name in ("added", "unchanged", "duplicates", "pruned", "captioned"):
        value = getattr(report, name, None)
        if value is None:
            continue
        fields[name] = len(value) if isinstance(value, (list, tuple, set)) else int(value)
    skipped = getattr(report, "skipped", None) or []
    fields["skipped"] = [_skip_entry(item) for item in skipped]
    return fields


def _skip_entry(item: Any) -> dict[str, str]:
    if isinstance(item, dict):
        return {"path": str(item.get("path")), "reason": str(item.get("reason"))}
    if isinstance(item, tuple):
        return {"path": str(item[0]), "reason": str(item[1])}
    return {"path": str(item.path), "reason": str(item.reason)}


__all__ = [
    "THUMBNAIL_PATH",
    "UPLOAD_SOURCE",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RetrieverService",
    "ServiceStartingError",
    "StoreLockedError",
    "is_store_lock_error",
    "store_description",
]
