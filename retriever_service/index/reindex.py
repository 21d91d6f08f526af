"""``reindex``: rebuild the index for another model while the current collection keeps serving, then switch.

The new collection (:func:`~retriever_service.index.collections.collection_for_model`) is filled from the records
of the serving one: each image is read again from a location that still holds its bytes (the content id is
checked), or, for a Slack image whose upload is gone, fetched again through ``refetch``; it is embedded with the new
model and stored with its record unchanged (every copy, visibility, text, tag and caption). Nothing is written to
the serving collection.

* resumable: each batch is stored as soon as it is embedded, and a new run skips the images already there;
* catching up: passes repeat until one finds nothing new, so images indexed, changed or deleted in the serving
  collection during the build are carried over;
* atomic: the switch is one alias operation (:func:`~retriever_service.index.collections.switch_active`);
* the old collection stays until ``chatir collections drop`` (or ``chatir reindex --drop-old``).

An image none of whose copies can be read any more is reported and left behind: it stays in the old collection.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from chatir.errors import ChatIRError
from chatir.ids import file_content_id
from retriever_service.index.collections import collection_for_model, switch_active
from retriever_service.index.indexer import DECODE_MAX_SIDE, SkippedFile
from retriever_service.index.records import Copy, ImageRecord

log = logging.getLogger(__name__)

MAX_PASSES = 4
"""Catch-up passes before switching (the first builds, the others carry over what changed meanwhile)."""
_PAGE = 1000

Refetch = Callable[[ImageRecord, str, Copy], Path | None]
"""(record, location, copy) -> a local file holding the image's bytes again (e.g. a Slack file downloaded anew)."""
Progress = Callable[[int, int], None]


class ReindexReport(BaseModel):
    source: str = Field(..., description="The collection that served before.")
    target: str = Field(..., description="The collection built for the new model.")
    model: str
    total: int = Field(0, description="Images in the source collection.")
    embedded: int = Field(0, description="Images embedded with the new model in this run.")
    resumed: int = Field(0, description="Images a stopped run had already stored.")
    refetched: int = Field(0, description="Images read from a fresh download of their Slack file.")
    updated: int = Field(0, description="Records carried over again because they changed during the build.")
    removed: int = Field(
        0, description="Images deleted from the source during the build, removed from the target."
    )
    missing: list[SkippedFile] = Field(
        default_factory=list, description="Images none of whose copies is readable."
    )
    relocated: list[str] = Field(
        default_factory=list,
        description="Ids whose re-fetched copy lives at a new path (the target differs).",
    )
    switched: bool = False


def reindex(
    *,
    settings: Any,
    source: Any,
    model: Any,
    lock: Any = None,
    refetch: Refetch | None = None,
    progress: Progress | None = None,
    batch_size: int = 32,
    switch: bool = True,
) -> tuple[ReindexReport, Any]:
    """Build the collection of ``model`` from ``source`` (an open :class:`ImageIndex`, the serving one) and, with
    ``switch``, make it the serving one. Returns the report and the new index (on ``source``'s client: the caller
    closes it). ``lock``: held around every store call (the service's index lock).
    """
    from retriever_service.index.store import ImageIndex

    lock = lock if lock is not None else contextlib.nullcontext()
    base = settings.collection
    target_name = collection_for_model(base, model.model_id, model.dim)
    if target_name == source.collection:
        raise ChatIRError(f"The index already serves model {model.model_id!r} (collection {target_name!r}).")
    with lock:
        target = ImageIndex(settings, model.model_id, model.dim, collection=target_name, client=source.client)
    report = ReindexReport(source=source.collection, target=target_name, model=model.model_id)
    try:
        with lock:
            report.resumed = target.count()
        for number in range(MAX_PASSES):
            if not _sync(
                source, target, model, report, lock, refetch, progress, batch_size, first=number == 0
            ):
                break
        if switch:
            with lock:
                switch_active(source.client, base, target_name)
            report.switched = True
            log.info("switched %r to %r (%s)", base, target_name, model.model_id)
    except BaseException:
        with lock:
            target.close()
        raise
    return report, target


def catch_up(
    *,
    source: Any,
    target: Any,
    model: Any,
    report: ReindexReport,
    refetch: Refetch | None = None,
    lock: Any = None,
) -> int:
    """One more pass after the switch (images a service wrote to the old collection before it followed)."""
    lock = lock if lock is not None else contextlib.nullcontext()
    return _sync(source, target, model, report, lock, refetch, None, 32, first=False)


def _pages(index: Any, lock: Any) -> Iterator[list[ImageRecord]]:
    """Every record of ``index``, a page per store call (the lock is released between pages)."""
    offset = None
    while True:
        with lock:
            points, offset = index.client.scroll(
                index.collection, limit=_PAGE, offset=offset, with_payload=True, with_vectors=False
            )
        yield [ImageRecord.from_payload(p.payload) for p in points if p.payload]
        if offset is None:
            return


def _sync(
    source: Any,
    target: Any,
    model: Any,
    report: ReindexReport,
    lock: Any,
    refetch: Refetch | None,
    progress: Progress | None,
    batch_size: int,
    *,
    first: bool,
) -> int:
    """One pass: carry over what the target lacks or holds differently; returns how many changes it made."""
    have = {r.id: r.payload() for page in _pages(target, lock) for r in page}
    with lock:
        total = source.count()
    if first:
        report.total = total
    done, changes = 0, 0
    seen: set[str] = set()
    pending: list[tuple[ImageRecord, Any]] = []
    missing = {m.path for m in report.missing}

    def flush() -> None:
        nonlocal changes
        if not pending:
            return
        vectors = np.asarray(model.encode_images([image for _, image in pending]), dtype=np.float32)
        with lock:
            target.upsert([record for record, _ in pending], vectors)
        report.embedded += len(pending)
        changes += len(pending)
        pending.clear()

    for page in _pages(source, lock):
        for record in page:
            seen.add(record.id)
            done += 1
            stored = have.get(record.id)
            if stored is not None:
                if stored != record.payload() and record.id not in report.relocated:
                    with lock:
                        target.update(record)
                    report.updated += 1
                    changes += 1
                continue
            image = _read_image(record, refetch, report)
            if image is None:
                if record.uri not in missing:
                    report.missing.append(
                        SkippedFile(path=record.uri, reason="no copy of the image is readable")
                    )
                    missing.add(record.uri)
                continue
            pending.append((record, image))
            if len(pending) >= batch_size:
                flush()
                if progress is not None:
                    progress(done, total)
        if progress is not None and not pending:
            progress(done, total)
    flush()
    gone = [image_id for image_id in have if image_id not in seen]
    if gone:
        with lock:
            report.removed += target.delete(gone)
        changes += len(gone)
    if progress is not None:
        progress(done, max(total, done))
    return changes


def _read_image(record: ImageRecord, refetch: Refetch | None, report: ReindexReport) -> Any:
    """The image decoded from a copy that still holds its bytes (a re-fetched one last), or None."""
    from retriever_service.models import DecodedImage, load_image

    for location in record.locations:
        path = Path(location.removeprefix("file://"))
        if "://" in location and not location.startswith("file://"):
            continue
        image = _decode_if_same(path, record.id, load_image, DecodedImage)
        if image is not None:
            return image
    if refetch is None:
        return None
    for location in record.locations:
        copy = record.copies.get(location)
        if copy is None:
            continue
        try:
            fetched = refetch(record, location, copy)
        except Exception as error:  # noqa: BLE001 -- one image's source failing must not stop the reindex
            log.warning("could not fetch %s again: %s", location, error)
            continue
        image = _decode_if_same(fetched, record.id, load_image, DecodedImage) if fetched is not None else None
        if image is not None:
            if str(fetched) != location:  # the copy now lives at the new path
                record.set_copy(str(fetched), copy)
                record.drop_copies({location})
                report.relocated.append(record.id)
            report.refetched += 1
            return image
    return None


def _decode_if_same(path: Path, image_id: str, load_image: Any, decoded_type: Any) -> Any:
    try:
        if not path.is_file() or file_content_id(path) != image_id:
            return None
    except OSError:
        return None
    decoded = load_image(path, max_side=DECODE_MAX_SIDE)
    return decoded.image if isinstance(decoded, decoded_type) else None


__all__ = ["MAX_PASSES", "Refetch", "ReindexReport", "catch_up", "reindex"]
