"""``chatir migrate-index``: copy a collection (normally the embedded store) into another Qdrant store.

The points are copied as they are (ids, vectors, payloads) in batches, and the target collection is created the
way the service creates one (:class:`~retriever_service.index.ImageIndex`: cosine, the model id and vector size in
its metadata, keyword payload indexes on a server), so a service pointed at it serves it at once. A target whose
collection holds another model's embeddings is refused.

* resumable: points already in the target with equal vectors and payloads are skipped, so a run killed or
  interrupted half-way is simply run again;
* verified at the end: equal point counts, and a random sample of points read back from both stores with
  equal vectors and payloads; a mismatch fails the run (:class:`MigrationMismatchError`).

Targets (:func:`target_settings`): ``http(s)://host:6333`` for a Qdrant server (API key from an environment
variable), or ``path:DIR`` / ``file:///DIR`` for the embedded store of another ChatIR home (what
``CHATIR_HOME=DIR`` would serve).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from pydantic import BaseModel, Field, SecretStr

from chatir.errors import ChatIRError, IndexMismatchError, ServiceUnavailableError
from chatir.settings import Settings
from retriever_service.errors import is_store_lock_error, store_description, store_locked_message
from retriever_service.index.store import META_DIM, META_MODEL, META_SIDECAR_SUFFIX, ImageIndex, connect

log = logging.getLogger(__name__)

DEFAULT_BATCH = 256
DEFAULT_SAMPLE = 256
_VECTOR_RTOL, _VECTOR_ATOL = 1e-5, 1e-6  # a server re-normalises cosine vectors: float32 rounding only
_SHOWN_MISMATCHES = 10

ProgressCallback = Callable[[int, int], None]


class MigrationMismatchError(ChatIRError):
    """The target does not hold what the source holds after the copy (counts or sampled points differ)."""

    def __init__(self, message: str, report: MigrationReport) -> None:
        super().__init__(message)
        self.report = report


class MigrationReport(BaseModel):
    """What a migration did and what its verification found."""

    source: str
    target: str
    model: str
    dim: int
    source_count: int = 0
    target_count: int = 0
    copied: int = Field(0, description="Points the target did not have.")
    updated: int = Field(0, description="Points the target had with another vector or payload (overwritten).")
    unchanged: int = Field(0, description="Points already in the target with equal content (skipped).")
    sampled: int = Field(0, description="Points compared vector by vector in the verification.")
    mismatches: list[str] = Field(default_factory=list, description="What the verification found different.")

    @property
    def verified(self) -> bool:
        return not self.mismatches


# --- the target --------------------------------------------------------------------------------------
def target_settings(
    source: Settings, to: str, *, collection: str | None = None, api_key: str | None = None
) -> Settings:
    """The settings of the store ``to`` names (a Qdrant URL, ``path:DIR`` or ``file:///DIR``), with the
    source's other settings; :class:`ChatIRError` for anything else, or for the source itself."""
    text = to.strip()
    name = collection or source.collection
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        key = SecretStr(api_key) if api_key else None
        target = source.model_copy(update={"qdrant_url": text, "qdrant_api_key": key, "collection": name})
    elif parsed.scheme in ("path", "file"):
        folder = unquote(text.split(":", 1)[1]) if parsed.scheme == "path" else unquote(parsed.path)
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise ChatIRError(f"Target {to!r}: a file URL must name a local folder (file:///path/to/home).")
        if not folder.strip():
            raise ChatIRError(
                f"Target {to!r} names no folder: use path:/path/to/home or file:///path/to/home."
            )
        home = Path(folder).expanduser().resolve()
        target = source.model_copy(update={"qdrant_url": None, "home": home, "collection": name})
    else:
        raise ChatIRError(
            f"Target {to!r} is neither a Qdrant server URL (http://host:6333, https://...) nor a local ChatIR "
            "home (path:/srv/chatir or file:///srv/chatir, whose embedded store is <home>/qdrant)."
        )
    if _store_key(target) == _store_key(source):
        raise ChatIRError(
            f"The target is the source itself (collection {name!r} in the {store_description(source)}): "
            "name another store, or another collection with --collection."
        )
    return target


def _store_key(settings: Settings) -> tuple[str, str]:
    where = (
        settings.qdrant_url.rstrip("/")
        if settings.qdrant_url
        else str(settings.qdrant_path.expanduser().resolve())
    )
    return where, settings.collection


# --- the migration -----------------------------------------------------------------------------------
def migrate_collection(
    source: Settings,
    target: Settings,
    *,
    batch_size: int = DEFAULT_BATCH,
    sample: int = DEFAULT_SAMPLE,
    verify_only: bool = False,
    progress: bool | ProgressCallback = True,
    seed: int | None = None,
) -> MigrationReport:
    """Copy ``source``'s collection into ``target``'s (created when missing), then verify it.

    ``verify_only``: copy nothing, only compare. ``sample``: how many random points the verification reads
    back from both stores (all of them when there are fewer). Raises :class:`MigrationMismatchError` when
    the verification finds a difference (the report is on the error as ``report``)."""
    if batch_size < 1 or sample < 0:
        raise ChatIRError("--batch-size must be at least 1 and --sample at least 0.")
    reader = _open_source(source)
    try:
        model_id, dim = _source_model(reader, source)
        try:
            writer = ImageIndex(target, model_id, dim, progress=False)
        except IndexMismatchError as error:
            raise IndexMismatchError(
                f"Refusing to migrate {model_id!r} ({dim}-d) embeddings into collection {target.collection!r} of "
                f"the {store_description(target)}: {error} (here: pick another target with --collection NAME.)"
            ) from error
        with writer:
            report = MigrationReport(
                source=f"collection {source.collection!r} in the {store_description(source)}",
                target=f"collection {target.collection!r} in the {store_description(target)}",
                model=model_id,
                dim=dim,
                source_count=_count(reader, source.collection),
            )
            if not verify_only:
                _copy(reader, source.collection, writer, report, batch_size=batch_size, progress=progress)
            _verify(reader, source.collection, writer, report, sample=sample, seed=seed)
    finally:
        reader.close()
    if report.mismatches:
        shown = "; ".join(report.mismatches[:_SHOWN_MISMATCHES])
        more = len(report.mismatches) - _SHOWN_MISMATCHES
        raise MigrationMismatchError(
            f"The {report.target} does not match the {report.source}: {shown}"
            + (f"; and {more} more" if more > 0 else "")
            + ". Run `chatir migrate-index` again to copy what is missing or different.",
            report,
        )
    return report


def _open_source(settings: Settings) -> Any:
    if not settings.qdrant_url and not settings.qdrant_path.expanduser().is_dir():
        raise ChatIRError(
            f"There is no embedded store at {settings.qdrant_path.expanduser()} to migrate (set CHATIR_HOME to "
            "the home that holds it)."
        )
    try:
        client = connect(settings)
    except Exception as error:  # the embedded store raises RuntimeError for a held lock
        if is_store_lock_error(error):
            raise ServiceUnavailableError(store_locked_message(settings)) from error
        raise
    try:
        exists = client.collection_exists(settings.collection)
    except Exception as error:
        client.close()
        raise ServiceUnavailableError(f"Cannot reach the {store_description(settings)}: {error}") from error
    if not exists:
        client.close()
        raise ChatIRError(
            f"The {store_description(settings)} has no collection {settings.collection!r} to migrate "
            "(CHATIR_COLLECTION names the source collection)."
        )
    return client


def _source_model(client: Any, settings: Settings) -> tuple[str, int]:
    """The model id and vector size the source collection records (as :class:`ImageIndex` writes them)."""
    info = client.get_collection(settings.collection)
    metadata = getattr(info.config, "metadata", None) or {}
    recorded: dict[str, Any] = dict(metadata) if META_MODEL in metadata else {}
    sidecar = settings.collection + META_SIDECAR_SUFFIX
    if not recorded and client.collection_exists(sidecar):
        points = client.retrieve(sidecar, ids=[0], with_payload=True)
        recorded = dict(points[0].payload or {}) if points else {}
    vectors = info.config.params.vectors
    size = int(vectors.size) if hasattr(vectors, "size") else None
    if META_MODEL not in recorded or size is None:
        raise IndexMismatchError(
            f"The collection {settings.collection!r} in the {store_description(settings)} was not written by chatir "
            "(it records no model id, or has named vectors): there is no model to give the target."
        )
    return str(recorded[META_MODEL]), int(recorded.get(META_DIM, size))


def _count(client: Any, collection: str) -> int:
    return int(client.count(collection, exact=True).count)


def _pages(client: Any, collection: str, batch_size: int, *, content: bool) -> Iterator[list[Any]]:
    offset = None
    while True:
        points, offset = client.scroll(
            collection, limit=batch_size, offset=offset, with_payload=content, with_vectors=content
        )
        if points:
            yield points
        if offset is None:
            return


def _copy(
    reader: Any,
    collection: str,
    writer: ImageIndex,
    report: MigrationReport,
    *,
    batch_size: int,
    progress: bool | ProgressCallback,
) -> None:
    from qdrant_client import models

    bar, tick = _progress(progress, total=report.source_count)
    try:
        for points in _pages(reader, collection, batch_size, content=True):
            stored = _by_id(
                writer.client.retrieve(
                    writer.collection, ids=[p.id for p in points], with_payload=True, with_vectors=True
                )
            )
            changed = []
            for point in points:
                there = stored.get(str(point.id))
                if there is None:
                    report.copied += 1
                elif _same(point, there):
                    report.unchanged += 1
                    continue
                else:
                    report.updated += 1
                changed.append(models.PointStruct(id=point.id, vector=point.vector, payload=point.payload))
            if changed:
                writer.client.upsert(writer.collection, points=changed, wait=True)
            tick(len(points))
    finally:
        if bar is not None:
            bar.close()


def _verify(
    reader: Any,
    collection: str,
    writer: ImageIndex,
    report: MigrationReport,
    *,
    sample: int,
    seed: int | None,
) -> None:
    report.source_count = _count(reader, collection)
    report.target_count = writer.count()
    if report.target_count != report.source_count:
        extra = report.target_count > report.source_count
        report.mismatches.append(
            f"the source holds {report.source_count} points, the target {report.target_count}"
            + (" (points of its own, never deleted here: migrate into a new --collection)" if extra else "")
        )
    ids = _reservoir(
        (p.id for page in _pages(reader, collection, 10_000, content=False) for p in page), sample, seed
    )
    report.sampled = len(ids)
    for start in range(0, len(ids), DEFAULT_BATCH):
        chunk = ids[start : start + DEFAULT_BATCH]
        source = _by_id(reader.retrieve(collection, ids=chunk, with_payload=True, with_vectors=True))
        target = _by_id(
            writer.client.retrieve(writer.collection, ids=chunk, with_payload=True, with_vectors=True)
        )
        for point_id in map(str, chunk):
            there = target.get(point_id)
            if there is None:
                report.mismatches.append(f"point {point_id} is missing in the target")
            elif not _same_vector(source[point_id].vector, there.vector):
                delta = float(np.max(np.abs(_array(source[point_id].vector) - _array(there.vector))))
                report.mismatches.append(
                    f"point {point_id} has another vector in the target (max difference {delta:.3g})"
                )
            elif source[point_id].payload != there.payload:
                fields = sorted(_differing_fields(source[point_id].payload or {}, there.payload or {}))
                report.mismatches.append(
                    f"point {point_id} has another payload in the target ({', '.join(fields)})"
                )


def _reservoir(items: Iterator[Any], k: int, seed: int | None) -> list[Any]:
    """A uniform random sample of ``k`` items from a stream of unknown length (all of them when fewer)."""
    rng = random.Random(seed)
    chosen: list[Any] = []
    for n, item in enumerate(items):
        if n < k:
            chosen.append(item)
        else:
            j = rng.randrange(n + 1)
            if j < k:
                chosen[j] = item
    return chosen


def _by_id(points: Sequence[Any]) -> dict[str, Any]:
    return {str(p.id): p for p in points}


def _array(vector: Any) -> np.ndarray:
    return np.asarray(vector, dtype=np.float32).ravel()


def _same_vector(a: Any, b: Any) -> bool:
    left, right = _array(a), _array(b)
    return left.shape == right.shape and bool(np.allclose(left, right, rtol=_VECTOR_RTOL, atol=_VECTOR_ATOL))


def _same(point: Any, there: Any) -> bool:
    return point.payload == there.payload and _same_vector(point.vector, there.vector)


def _differing_fields(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


def _progress(progress: bool | ProgressCallback, *, total: int) -> tuple[Any, Callable[[int], None]]:
    if callable(progress):
        done = [0]
        progress(0, total)

        def tick(n: int) -> None:
            done[0] += n
            progress(done[0], total)

        return None, tick
    from tqdm import tqdm

    bar = tqdm(total=total, desc="migrating", unit="point", disable=not progress)
    return bar, bar.update


__all__ = [
    "MigrationMismatchError",
    "MigrationReport",
    "migrate_collection",
    "target_settings",
]
