"""What the index stores per image: :class:`ImageRecord`, its content id and its Qdrant point id.

The id of an image is the first 32 hex characters of the SHA-256 of its bytes, so the same file found
twice (another folder, another Slack channel) is one record with several ``locations``. Qdrant point ids
must be UUIDs or integers: the point id is the UUID spelled by those 32 hex characters, and the payload
keeps the hex ``id`` too.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from chatir.ids import ID_LENGTH, content_id, file_content_id, is_image_id
from chatir.schemas import PUBLIC, SearchFilter
from chatir.scope import SearchScope

FILTER_FIELDS = ("allowed", "source", "tags")
"""Payload fields a search can filter on (keyword payload indexes on the server)."""
CAPTION_FIELD = "caption"
"""Payload field of the captioner's sentence (a full-text payload index on the server)."""


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def point_id(image_id: str) -> str:
    """The Qdrant point id (a UUID string) of an image id."""
    return str(uuid.UUID(hex=image_id))


def image_id_of_point(point: str | uuid.UUID) -> str:
    """Inverse of :func:`point_id`."""
    if isinstance(point, uuid.UUID):
        return point.hex
    text = str(point)
    if _CANONICAL_UUID.fullmatch(text):  # what Qdrant returns: the hex digits are the id (no parse needed)
        return text.replace("-", "")
    return uuid.UUID(text).hex


def text_from_filename(path: str | os.PathLike[str]) -> str:
    """Free text of a file: its name without extension, separators turned into spaces."""
    stem = Path(path).stem
    return " ".join(re.sub(r"[_\-.+]+", " ", stem).split())


def _now() -> datetime:
    return datetime.now(UTC)


class Copy(BaseModel):
    """What one location of an image was indexed with: who may see it and what it says about the image.

    The same bytes posted in two channels are one image with two copies; a caller is shown only the copies it
    may see (:meth:`ImageRecord.visible_copy`), never the path, message text or tags of another channel's."""

    allowed: list[str] = Field(default_factory=list)
    source: str | None = None
    text: str | None = None
    tags: list[str] = Field(default_factory=list)
    owner: str | None = None

    def visible_to(self, scope: SearchFilter | None) -> bool:
        """Whether a caller searching with ``scope`` may see this copy (:meth:`SearchScope.admits`)."""
        return SearchScope.from_filter(scope).admits(allowed=self.allowed, source=self.source, tags=self.tags)


class ImageRecord(BaseModel):
    """One indexed image (the payload of its Qdrant point).

    ``allowed`` and ``tags`` are the union over its copies (what a search filters on); ``copies`` keeps each
    location's own metadata, and the top-level ``source``/``text``/``owner`` are the primary copy's."""

    id: str = Field(..., description="First 32 hex chars of the SHA-256 of the file bytes.")
    uri: str = Field(..., description="Path or URL of the primary copy.")
    locations: list[str] = Field(default_factory=list, description="Every path/URI holding these bytes.")
    mime: str | None = None
    width: int | None = None
    height: int | None = None
    source: str | None = Field(None, description="A folder, 'slack:<channel>/<file>' or a URL.")
    allowed: list[str] = Field(default_factory=lambda: [PUBLIC], description="Visibility groups.")
    owner: str | None = None
    tags: list[str] = Field(default_factory=list)
    text: str | None = Field(None, description="Free text: file name, message text.")
    caption: str | None = Field(
        None, description="The captioner's sentence about the image (CHATIR_CAPTIONER)."
    )
    indexed_at: datetime = Field(default_factory=_now)
    file_size: int | None = Field(None, description="Bytes (the same for every location).")
    file_mtime: float | None = Field(None, description="Modification time of the primary copy.")
    location_mtimes: dict[str, float] = Field(
        default_factory=dict,
        description="Modification time of each local file location (incremental indexing of duplicates).",
    )
    copies: dict[str, Copy] = Field(
        default_factory=dict,
        description="Per location: the visibility and metadata it was indexed with. A location without an entry "
        "(a record written before copies were kept) is shown to nobody but callers who may see the primary.",
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        value = value.lower()
        if not is_image_id(value):
            raise ValueError(f"image id must be {ID_LENGTH} hex characters, got {value!r}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        if self.uri not in self.locations:
            self.locations.insert(0, self.uri)
        if self.uri not in self.copies:
            self.copies[self.uri] = Copy(
                allowed=list(self.allowed),
                source=self.source,
                text=self.text,
                tags=list(self.tags),
                owner=self.owner,
            )

    def visible_copy(self, scope: SearchFilter | None) -> tuple[str, Copy] | None:
        """The first location (primary first) a caller searching with ``scope`` may see, with its metadata."""
        for location in self.locations:
            copy = self.copies.get(location)
            if copy is not None and copy.visible_to(scope):
                return location, copy
        return None

    def set_copy(self, location: str, copy: Copy) -> None:
        """Add or replace one location's metadata and refresh the unions the filters read."""
        if location not in self.locations:
            self.locations.append(location)
        self.copies[location] = copy
        self._refresh_unions()

    def drop_copies(self, gone: set[str]) -> None:
        """Forget locations (files gone); the primary moves to the first remaining one."""
        self.locations = [loc for loc in self.locations if loc not in gone]
        self.location_mtimes = {k: v for k, v in self.location_mtimes.items() if k not in gone}
        self.copies = {k: v for k, v in self.copies.items() if k not in gone}
        if self.uri in gone and self.locations:
            self.uri = self.locations[0]
            self.file_mtime = self.location_mtimes.get(self.uri)
            primary = self.copies.get(self.uri)
            if primary is not None:
                self.source, self.text, self.owner = primary.source, primary.text, primary.owner
        self._refresh_unions()

    def _refresh_unions(self) -> None:
        """``allowed``/``tags`` = union over the copies, when every location has its metadata (a record from
        before copies were kept keeps its unions: they can only be narrowed once all copies are known)."""
        if all(location in self.copies for location in self.locations):
            self.allowed = list(dict.fromkeys(g for loc in self.locations for g in self.copies[loc].allowed))
            self.tags = list(dict.fromkeys(t for loc in self.locations for t in self.copies[loc].tags))

    @property
    def point_id(self) -> str:
        return point_id(self.id)

    def payload(self) -> dict[str, Any]:
        """The Qdrant payload (JSON types only)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImageRecord:
        return cls.model_validate(payload)

    def filter_payload(self) -> dict[str, Any]:
        """Only the fields a search filters on, plus the id (what the fast search path keeps)."""
        return {"id": self.id, "allowed": list(self.allowed), "source": self.source, "tags": list(self.tags)}


__all__ = [
    "CAPTION_FIELD",
    "FILTER_FIELDS",
    "ID_LENGTH",
    "Copy",
    "ImageRecord",
    "content_id",
    "file_content_id",
    "image_id_of_point",
    "is_image_id",
    "point_id",
    "text_from_filename",
]
