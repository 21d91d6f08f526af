"""``index_paths``: walk folders, embed new images, keep the index in step with the files.

* recursive and batched; files are hashed and decoded in a thread pool while the model embeds the
  previous batch;
* incremental: a file whose (path, size, mtime) is already indexed is neither read nor embedded;
* content-addressed: an exact duplicate is stored once, with every location;
* ``prune``: files that vanished from the walked folders are forgotten (an image goes with its last copy);
* never aborts on a bad file: corrupt, unreadable and non-image files are listed with a reason;
* each batch is written as soon as it is embedded, so Ctrl-C loses nothing already indexed and the next
  run carries on where this one stopped;
* ``shard``: only this process's share of the files (:mod:`retriever_service.index.shard`), so N processes
  index one input into one collection; an image another writer stored meanwhile becomes a copy, not a
  second embedding (the bytes are stored once across shards).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from chatir.schemas import PUBLIC
from chatir.shard import Shard
from retriever_service.index.records import Copy, ImageRecord, file_content_id, text_from_filename
from retriever_service.index.shard import owns_location, take_shard

log = logging.getLogger(__name__)

DECODE_MAX_SIDE = 768
"""Images are decoded at most this large (JPEG draft mode): models look at 224-384 px."""


class SkippedFile(BaseModel):
    path: str
    reason: str


class IndexReport(BaseModel):
    """What an indexing run did."""

    added: int = Field(0, description="New images embedded and stored.")
    unchanged: int = Field(0, description="Files already indexed (not read again).")
    duplicates: int = Field(
        0, description="New copies of images already indexed (stored as extra locations)."
    )
    pruned: int = Field(0, description="Vanished files forgotten (with --prune).")
    captioned: int = Field(0, description="Images given a caption (new ones and earlier ones without).")
    skipped: list[SkippedFile] = Field(default_factory=list, description="Files that could not be indexed.")
    other_shards: int = Field(0, description="Files left to the other shards (with a shard).")

    @property
    def seen(self) -> int:
        return self.added + self.unchanged + self.duplicates + len(self.skipped)


ProgressCallback = Callable[[int, int], None]


@dataclass
class _Candidate:
    path: Path
    key: str  # the location string stored in the index
    root: Path
    size: int
    mtime: float


@dataclass
class _Prepared:
    candidate: _Candidate
    image_id: str | None = None
    decoded: Any = None  # retriever_service.models.DecodedImage
    reason: str | None = None  # set when the file is skipped


def index_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    model: Any,
    index: Any,
    source: str | None = None,
    allowed: Sequence[str] = (PUBLIC,),
    tags: Sequence[str] = (),
    owner: str | None = None,
    text: str | None = None,
    prune: bool = False,
    progress: bool | ProgressCallback = True,
    batch_size: int | None = None,
    workers: int | None = None,
    captioner: Any = None,
    shard: Shard | None = None,
) -> IndexReport:
    """Index the image files under ``paths`` (files or folders, recursively) into ``index``.

    ``model``: a :class:`~retriever_service.models.RetrievalModel` (``encode_images``); ``index``: an
    :class:`~retriever_service.index.ImageIndex`. ``source`` defaults to the folder given on the command
    line; ``text`` to the file name. ``progress``: a tqdm bar (True), nothing (False) or a callback
    ``(done, total)``. ``captioner`` (optional, :class:`~retriever_service.models.captioner.Captioner`)
    captions new images, and images under ``paths`` indexed before without a caption (a backfill).
    ``shard``: index only the files of this shard (pruning, too, only forgets this shard's files).
    A ``KeyboardInterrupt`` propagates after the batches already embedded are stored.
    """
    report = IndexReport()
    batch_size = int(batch_size or getattr(model, "batch_size", None) or 32)
    workers = workers or min(4, os.cpu_count() or 1)
    allowed, tags = list(dict.fromkeys(allowed)), list(dict.fromkeys(tags))

    roots = [Path(p).expanduser() for p in paths]
    known = index.file_index()  # location -> FileEntry(id, size, mtime)
    known_ids = {entry.id for entry in known.values()}
    candidates: list[_Candidate] = []
    for root in roots:
        if not root.exists():
            report.skipped.append(SkippedFile(path=str(root), reason="not found"))
            continue
        candidates.extend(_walk(root.resolve(), report))
    candidates = list({c.key: c for c in candidates}.values())  # overlapping roots: each file once
    candidates, report.other_shards = take_shard(candidates, shard)

    todo: list[_Candidate] = []
    for candidate in candidates:
        entry = known.get(candidate.key)
        if entry is not None and entry.size == candidate.size and entry.mtime == candidate.mtime:
            report.unchanged += 1
        else:
            todo.append(candidate)

    bar, tick = _progress(progress, total=len(candidates), initial=report.unchanged)
    writer = _BatchWriter(
        model=model,
        index=index,
        report=report,
        known=known,
        known_ids=known_ids,
        source=source,
        allowed=allowed,
        tags=tags,
        owner=owner,
        text=text,
        captioner=captioner,
    )
    try:
        for prepared in _prepare_all(todo, known_ids, workers=workers, window=2 * batch_size):
            writer.add(prepared)
            if len(writer.pending) >= batch_size:
                writer.flush()
            tick(1)
        writer.flush()
    finally:
        if bar is not None:
            bar.close()

    if captioner is not None:
        report.captioned += caption_missing(
            index, captioner, {c.key for c in candidates}, batch_size=batch_size
        )
    if prune:
        mine = {loc: entry for loc, entry in known.items() if owns_location(loc, roots, shard)}
        report.pruned = _prune(index, mine, roots, seen={c.key for c in candidates})
    if report.added:
        index.optimize()
    return report


# --- captions ----------------------------------------------------------------------------------------
def _caption_records(captioner: Any, records: Sequence[ImageRecord], images: Sequence[Any]) -> int:
    """Set each record's caption (a failure is logged and leaves them without one: captions are a bonus)."""
    try:
        captions = captioner.caption(list(images))
    except Exception as error:  # noqa: BLE001 -- a captioner failure must never stop indexing
        log.warning("captioning %d images failed: %s", len(records), error)
        return 0
    for record, caption in zip(records, captions, strict=True):
        record.caption = caption or None
    return sum(1 for c in captions if c)


def caption_missing(index: Any, captioner: Any, locations: set[str], *, batch_size: int = 32) -> int:
    """Caption the stored images that have a copy at one of ``locations`` and no caption yet; how many."""
    from retriever_service.models import DecodedImage, load_image

    todo = [r for r in index.iter_records() if r.caption is None and locations.intersection(r.locations)]
    done = 0
    for start in range(0, len(todo), batch_size):
        batch, images = [], []
        for record in todo[start : start + batch_size]:
            path = next((loc for loc in record.locations if loc in locations and Path(loc).is_file()), None)
            decoded = load_image(Path(path), max_side=DECODE_MAX_SIDE) if path else None
            if isinstance(decoded, DecodedImage):
                batch.append(record)
                images.append(decoded.image)
        if batch and _caption_records(captioner, batch, images):
            for record in batch:
                index.update(record)
            done += sum(1 for r in batch if r.caption)
    return done


# --- walking -----------------------------------------------------------------------------------------
def _walk(root: Path, report: IndexReport) -> Iterator[_Candidate]:
    """Files under ``root`` (hidden files and folders skipped), in a stable order."""
    if root.is_file():
        yield from _candidate(root, root.parent, report)
        return
    for folder, dirs, files in os.walk(root, onerror=lambda e: _walk_error(e, report)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield from _candidate(Path(folder) / name, root, report)


def _walk_error(error: OSError, report: IndexReport) -> None:
    report.skipped.append(
        SkippedFile(path=str(error.filename), reason=f"cannot list folder: {error.strerror}")
    )


def _candidate(path: Path, root: Path, report: IndexReport) -> Iterator[_Candidate]:
    try:
        stat = path.stat()
    except OSError as error:
        report.skipped.append(SkippedFile(path=str(path), reason=f"cannot read: {error.strerror or error}"))
        return
    if not path.is_file():
        return  # sockets, fifos, broken links
    if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
        report.skipped.append(
            SkippedFile(path=str(path), reason="a link to a file outside the indexed folder (not followed)")
        )
        return
    yield _Candidate(path=path, key=str(path), root=root, size=stat.st_size, mtime=stat.st_mtime)


# --- hashing + decoding in a thread pool ---------------------------------------------------------------
def _prepare(candidate: _Candidate, known_ids: set[str]) -> _Prepared:
    from retriever_service.models import DecodedImage, load_image

    try:
        image_id = file_content_id(candidate.path)
    except OSError as error:
        return _Prepared(candidate, reason=f"cannot read: {error.strerror or error}")
    if image_id in known_ids:  # a copy of an indexed image: no need to decode it
        return _Prepared(candidate, image_id=image_id)
    decoded = load_image(candidate.path, max_side=DECODE_MAX_SIDE)
    if not isinstance(decoded, DecodedImage):
        return _Prepared(candidate, image_id=image_id, reason=decoded.reason)
    return _Prepared(candidate, image_id=image_id, decoded=decoded)


def _prepare_all(
    candidates: Sequence[_Candidate], known_ids: set[str], *, workers: int, window: int
) -> Iterator[_Prepared]:
    """Results in input order, at most ``window`` files in flight; closing the generator cancels the rest."""
    pending: deque[Future[_Prepared]] = deque()
    source = iter(candidates)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chatir-index")
    try:
        while True:
            while len(pending) < window:
                candidate = next(source, None)
                if candidate is None:
                    break
                pending.append(executor.submit(_prepare, candidate, known_ids))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


# --- writing -------------------------------------------------------------------------------------------
class _BatchWriter:
    """Turns prepared files into index writes: new images wait in ``pending`` for one model call."""

    def __init__(
        self,
        *,
        model: Any,
        index: Any,
        report: IndexReport,
        known: dict[str, Any],
        known_ids: set[str],
        source: str | None,
        allowed: list[str],
        tags: list[str],
        owner: str | None,
        text: str | None,
        captioner: Any = None,
    ) -> None:
        self.model, self.index, self.report, self.captioner = model, index, report, captioner
        self.known, self.known_ids = known, known_ids
        self.source, self.allowed, self.tags, self.owner, self.text = source, allowed, tags, owner, text
        self.pending: list[tuple[ImageRecord, Any]] = []
        self._pending_by_id: dict[str, ImageRecord] = {}

    def add(self, prepared: _Prepared) -> None:
        candidate = prepared.candidate
        old = self.known.get(candidate.key)
        if prepared.reason is not None and prepared.image_id is None:
            self._skip(candidate, prepared.reason)
            return
        image_id = prepared.image_id
        assert image_id is not None
        if old is not None and old.id != image_id:  # the file at this path changed: forget the old content
            self.index.remove_locations(old.id, [candidate.key])
        if old is not None and old.id == image_id:  # touched, same bytes
            self._add_copy(image_id, candidate)
            self.report.unchanged += 1
        elif image_id in self._pending_by_id:  # a copy of an image in the batch being embedded
            record = self._pending_by_id[image_id]
            record.location_mtimes[candidate.key] = candidate.mtime
            record.set_copy(candidate.key, self._copy(candidate))
            self.report.duplicates += 1
        elif image_id in self.known_ids:  # a copy of an image already stored
            self._add_copy(image_id, candidate)
            self.report.duplicates += 1
        elif prepared.reason is not None:
            self._skip(candidate, prepared.reason)
        else:
            record = self._record(candidate, image_id, prepared.decoded)
            self.pending.append((record, prepared.decoded.image))
            self._pending_by_id[image_id] = record

    def flush(self) -> None:
        """Embed the pending images and store them (one model call, one index write)."""
        if not self.pending:
            return
        records, vectors = self._embed([r for r, _ in self.pending], [image for _, image in self.pending])
        if records and self.captioner is not None:
            images = {r.id: image for r, image in self.pending}
            self.report.captioned += _caption_records(
                self.captioner, records, [images[r.id] for r in records]
            )
        records, vectors = self._copies_of_images_stored_meanwhile(records, vectors)
        if records:
            self.index.upsert(records, vectors)
            self.known_ids.update(r.id for r in records)
            self.report.added += len(records)
        self.pending.clear()
        self._pending_by_id.clear()

    def _copies_of_images_stored_meanwhile(
        self, records: list[ImageRecord], vectors: np.ndarray
    ) -> tuple[list[ImageRecord], np.ndarray]:
        """Another writer (a shard in another process) may have stored some of these images since this run
        read the index: their files become copies of the stored image, as if this run had seen it, so a new
        embedding never replaces the record (and its other locations) written by the other shard."""
        if not records:
            return records, vectors
        stored = {r.id for r in self.index.get_many([r.id for r in records])}
        if not stored:
            return records, vectors
        keep = [i for i, record in enumerate(records) if record.id not in stored]
        for record in records:
            if record.id in stored:
                for location in record.locations:
                    copy = record.copies[location]
                    mtime = record.location_mtimes.get(location)
                    self.index.add_location(record.id, location, mtime=mtime, **copy.model_dump())
                self.report.duplicates += 1  # its other locations were counted as duplicates already
        self.known_ids.update(stored)
        return [records[i] for i in keep], vectors[keep]

    def _embed(self, records: list[ImageRecord], images: list[Any]) -> tuple[list[ImageRecord], np.ndarray]:
        try:
            return records, np.asarray(self.model.encode_images(images), dtype=np.float32)
        except Exception as error:  # noqa: BLE001 -- find the culprit image, keep the others
            log.warning("embedding a batch failed (%s); retrying image by image", error)
        kept, vectors = [], []
        for record, image in zip(records, images, strict=True):
            try:
                vectors.append(np.asarray(self.model.encode_images([image]), dtype=np.float32)[0])
                kept.append(record)
            except Exception as error:  # noqa: BLE001
                for location in record.locations:
                    self._skip_path(location, f"the model cannot embed it: {type(error).__name__}: {error}")
        return kept, np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)

    def _copy(self, candidate: _Candidate) -> Copy:
        """The visibility and metadata this run gives the file at ``candidate``."""
        return Copy(
            allowed=list(self.allowed),
            source=self.source or str(candidate.root),
            text=self.text if self.text is not None else text_from_filename(candidate.path),
            tags=list(self.tags),
            owner=self.owner,
        )

    def _add_copy(self, image_id: str, candidate: _Candidate) -> None:
        copy = self._copy(candidate)
        self.index.add_location(image_id, candidate.key, mtime=candidate.mtime, **copy.model_dump())

    def _record(self, candidate: _Candidate, image_id: str, decoded: Any) -> ImageRecord:
        copy = self._copy(candidate)
        return ImageRecord(
            id=image_id,
            uri=candidate.key,
            locations=[candidate.key],
            mime=decoded.mime,
            width=decoded.width,
            height=decoded.height,
            source=copy.source,
            allowed=copy.allowed,
            owner=copy.owner,
            tags=copy.tags,
            text=copy.text,
            file_size=candidate.size,
            file_mtime=candidate.mtime,
            location_mtimes={candidate.key: candidate.mtime},
        )

    def _skip(self, candidate: _Candidate, reason: str) -> None:
        self._skip_path(candidate.key, reason)

    def _skip_path(self, path: str, reason: str) -> None:
        self.report.skipped.append(SkippedFile(path=path, reason=reason))


# --- pruning -------------------------------------------------------------------------------------------
def _prune(index: Any, known: dict[str, Any], roots: Sequence[Path], seen: set[str]) -> int:
    """Forget indexed files under the walked roots that are gone. A root that does not exist prunes
    nothing (an unmounted disk must not empty the index)."""
    live_roots = [root.resolve() for root in roots if root.exists()]
    gone_by_id: dict[str, list[str]] = {}
    for location, entry in known.items():
        if location in seen:
            continue
        path = Path(location)
        if not any(path == root or path.is_relative_to(root) for root in live_roots):
            continue
        if not path.exists():
            gone_by_id.setdefault(entry.id, []).append(location)
    for image_id, locations in gone_by_id.items():
        index.remove_locations(image_id, locations)
    return sum(len(v) for v in gone_by_id.values())


# --- progress ------------------------------------------------------------------------------------------
def _progress(
    progress: bool | ProgressCallback, *, total: int, initial: int
) -> tuple[Any, Callable[[int], None]]:
    if callable(progress):
        done = [initial]
        progress(initial, total)

        def tick(n: int) -> None:
            done[0] += n
            progress(done[0], total)

        return None, tick
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc="indexing", unit="file", disable=not progress)
    return bar, bar.update


__all__ = ["IndexReport", "SkippedFile", "index_paths"]
