"""Image ids: the first 32 hex characters of the SHA-256 of an image's bytes (the same file found twice is
one image). Part of the wire contract, so clients can name an image they hold without asking the service."""

from __future__ import annotations

import hashlib
import os
import re

ID_LENGTH = 32
_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_HASH_CHUNK = 1 << 20


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
