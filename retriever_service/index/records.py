"""What the index stores per image: :class:`ImageRecord`, its content id and its Qdrant point id.

The id of an image is the first 32 hex characters of the SHA-256 of its bytes, so the same file found
twice (another folder, another Slack channel) is one record with several ``locations``. Qdrant point ids
must be UUIDs or integers: the point id is the UUID spelled by those 32 hex characters, and the payload
keeps the hex ``id`` too.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from retriever_service.schemas import PUBLIC

ID_LENGTH = 32
_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_HASH_CHUNK = 1 << 20

FILTER_FIELDS = ("allowed", "source", "tags")
"""Payload fields a search can filter on (keyword payload indexes on the server)."""


def content_id(data: bytes) -> str:
    """Content id of some bytes: the first 32 hex characters of their SHA-256."""
    return hashlib.sha256(data).hexdigest()[:ID_LENGTH]


def file_content_id(path: str | os.PathLike[str]) -> str:
    """Content id of a file, read in chunks (raises ``OSError`` when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:ID_LENGTH]


def is_image_id(value: str) -> bool:
    """True when ``value`` has the form of an image id (32 lowercase hex characters)."""
    return isinstance(value, str) and bool(_ID_PATTERN.match(value))


def point_id(image_id: str) -> str:
    """The Qdrant point id (a UUID string) of an image id."""
    return str(uuid.UUID(hex=image_id))


def image_id_of_point(point: str | uuid.UUID) -> str:
    """Inverse of :func:`point_id`."""
    return (point if isinstance(point, uuid.UUID) else uuid.UUID(str(point))).hex


def text_from_filename(path: str | os.PathLike[str]) -> str:
    """Free text of a file: its name without extension, separators turned into spaces."""
    stem = Path(path).stem
    return " ".join(re.sub(r"[_\-.+]+", " ", stem).split())


def _now() -> datetime:
    return datetime.now(UTC)


class ImageRecord(BaseModel):
    """One indexed image (the payload of its Qdrant point)."""

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
    indexed_at: datetime = Field(default_factory=_now)
    file_size: int | None = Field(None, description="Bytes (the same for every location).")
    file_mtime: float | None = Field(None, description="Modification time of the primary copy.")
    location_mtimes: dict[str, float] = Field(
        default_factory=dict,
        description="Modification time of each local file location (incremental indexing of duplicates).",
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        value = value.lower()
        if not _ID_PATTERN.match(value):
            raise ValueError(f"image id must be {ID_LENGTH} hex characters, got {value!r}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        if self.uri not in self.locations:
            self.locations.insert(0, self.uri)

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
    "FILTER_FIELDS",
    "ID_LENGTH",
    "ImageRecord",
    "content_id",
    "file_content_id",
    "image_id_of_point",
    "is_image_id",
    "point_id",
    "text_from_filename",
]
