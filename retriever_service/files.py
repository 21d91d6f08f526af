"""An indexed image's files on the service's disk: which copies a caller may see, which still hold the indexed
bytes, and the cached JPEG thumbnails (``GET /v1/images/{id}`` and ``/thumbnail``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatir.schemas import SearchFilter

if TYPE_CHECKING:
    from retriever_service.index import ImageRecord


def record_locations(record: Any) -> list[str]:
    """Every location of ``record`` (its primary ``uri`` first), each once."""
    seen: list[str] = []
    for location in [record.uri, *(getattr(record, "locations", None) or [])]:
        if location and str(location) not in seen:
            seen.append(str(location))
    return seen


def visible_locations(record: ImageRecord, allowed: list[str] | None) -> list[str]:
    """The locations of ``record`` whose copy a caller with visibility groups ``allowed`` may see (all when
    ``allowed`` is None: a trusted caller)."""
    if allowed is None:
        return record_locations(record)
    scope = SearchFilter(allowed=allowed)
    return [
        loc
        for loc in record_locations(record)
        if (c := record.copies.get(loc)) is not None and c.visible_to(scope)
    ]


def first_local_file(record: Any, locations: list[str] | None = None) -> Path | None:
    """The first location of ``record`` (or of ``locations``) that still holds the indexed bytes.

    A location is used only when it is a regular file, not a symbolic link, and its content still hashes to the
    record's id: a file replaced after indexing (by other bytes, or by a link to ``/etc/passwd``) is never read
    or served under the old id."""
    from retriever_service.index.records import file_content_id

    for location in record_locations(record) if locations is None else locations:
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


def thumbnail_file(thumbnails_dir: str | Path, image_id: str, size: int) -> Path:
    """Where the thumbnail of ``image_id`` at ``size`` is cached."""
    return Path(thumbnails_dir) / f"{image_id}_{size}.jpg"


def remove_thumbnails(thumbnails_dir: str | Path, image_id: str) -> None:
    """Delete the cached thumbnails of ``image_id``, every size."""
    for thumb in Path(thumbnails_dir).glob(f"{image_id}_*.jpg"):
        thumb.unlink(missing_ok=True)


def write_thumbnail(source: Path, target: Path, size: int) -> None:
    """Write a JPEG of ``source`` (any supported format, :func:`retriever_service.decode.open_rgb`) whose longest
    side is at most ``size`` into ``target`` (atomically). Raises ``DecodeError`` or ``OSError``."""
    from PIL import Image

    from retriever_service.decode import open_rgb

    target.parent.mkdir(parents=True, exist_ok=True)
    image = open_rgb(source, max_side=size, resample=Image.Resampling.LANCZOS).image
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".thumb-", suffix=".jpg")
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="JPEG", quality=85, optimize=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "first_local_file",
    "record_locations",
    "remove_thumbnails",
    "thumbnail_file",
    "visible_locations",
    "write_thumbnail",
]
