"""Opening the embedded store (no ``QDRANT_URL``), converting one written by an older ChatIR on the way.

Before the Edge store, the embedded store was qdrant-client's local mode (``CHATIR_HOME/qdrant`` holding
``meta.json`` and SQLite files) with a Qdrant Edge mirror beside it (``CHATIR_HOME/qdrant-edge``). Now it is
:class:`~retriever_service.index.edge_store.EdgeStore` in the same folder. The first open of an old store copies
every collection (ids, vectors, payloads, metadata) and alias into the new format with a progress bar, keeps the
old folder as ``qdrant.v1-backup`` and drops the old mirror. The copy is built in ``qdrant.converting`` and swapped
in only when complete, so an interrupted conversion loses nothing and simply starts again at the next open.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from chatir.settings import Settings
from retriever_service.index.edge_store import CATALOG, EdgeStore

log = logging.getLogger(__name__)

LEGACY_MARKER = "meta.json"
CONVERTING_SUFFIX = ".converting"
BACKUP_SUFFIX = ".v1-backup"
COMPLETE_MARKER = "conversion-complete"
_PAGE = 2_000


def open_embedded(settings: Settings, *, progress: bool = True) -> EdgeStore:
    """The embedded store of ``settings`` (``settings.qdrant_path``), converted first if an older ChatIR wrote it."""
    path = Path(settings.qdrant_path).expanduser()
    finish_interrupted_swap(path)
    if is_legacy_store(path):
        convert_legacy_store(path, progress=progress)
    return EdgeStore(path)


def is_legacy_store(path: Path) -> bool:
    """True for a folder written by qdrant-client's local mode (and not yet converted)."""
    return (path / LEGACY_MARKER).is_file() and not (path / CATALOG).exists()


def finish_interrupted_swap(path: Path) -> None:
    """A conversion that completed but died between moving the old folder away and moving the new one in."""
    converting = _sibling(path, CONVERTING_SUFFIX)
    if not path.exists() and (converting / COMPLETE_MARKER).exists():
        converting.rename(path)
        (path / COMPLETE_MARKER).unlink()
        log.info("finished converting the embedded store at %s", path)


def convert_legacy_store(path: Path, *, progress: bool = True) -> Path:
    """Copy the qdrant-client local store in ``path`` into an :class:`EdgeStore` in its place; returns the folder
    where the old store is kept."""
    from qdrant_client import QdrantClient
    from tqdm import tqdm

    converting = _sibling(path, CONVERTING_SUFFIX)
    if converting.exists():  # an earlier attempt that did not finish
        shutil.rmtree(converting)
    log.warning("converting the embedded store at %s to the Qdrant Edge format (once)", path)
    old = QdrantClient(path=str(path))
    try:
        new = EdgeStore(converting)
        try:
            for description in old.get_collections().collections:
                _copy_collection(old, new, description.name, tqdm, progress)
            operations = _alias_operations(old)
            if operations:
                new.update_collection_aliases(change_aliases_operations=operations)
        finally:
            new.close()
    finally:
        old.close()
    (converting / COMPLETE_MARKER).touch()
    backup = _free_name(_sibling(path, BACKUP_SUFFIX))
    path.rename(backup)
    converting.rename(path)
    (path / COMPLETE_MARKER).unlink()
    shutil.rmtree(path.with_name(path.name + "-edge"), ignore_errors=True)  # the old search mirror
    log.warning(
        "converted the embedded store at %s; the old copy is kept at %s (delete it when done)", path, backup
    )
    return backup


def _copy_collection(old: Any, new: EdgeStore, name: str, tqdm: Any, progress: bool) -> None:
    from qdrant_client import models

    info = old.get_collection(name)
    vectors = info.config.params.vectors
    distance = getattr(vectors, "distance", None)
    if not hasattr(vectors, "size") or distance != models.Distance.COSINE:
        log.warning("not converting collection %r: only single cosine vectors are kept by ChatIR", name)
        return
    new.create_collection(name, vectors, metadata=getattr(info.config, "metadata", None) or {})
    total = int(old.count(name, exact=True).count)
    offset = None
    with tqdm(
        total=total, desc=f"converting {name}", unit="img", disable=not progress or total < 1_000
    ) as bar:
        while True:
            points, offset = old.scroll(
                name, limit=_PAGE, offset=offset, with_payload=True, with_vectors=True
            )
            if points:
                new.upsert(
                    name,
                    points=[
                        models.PointStruct(id=p.id, vector=p.vector, payload=p.payload or {}) for p in points
                    ],
                )
                bar.update(len(points))
            if offset is None:
                break
    new.optimize(name)


def _alias_operations(old: Any) -> list[Any]:
    from qdrant_client import models

    return [
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=a.collection_name, alias_name=a.alias_name)
        )
        for a in old.get_aliases().aliases
    ]


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


__all__ = ["convert_legacy_store", "is_legacy_store", "open_embedded"]
