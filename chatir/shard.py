"""Shards of an indexing run: ``--shard I/N`` takes the files whose path hashes to ``I`` of ``N``.

N processes (a Kubernetes Indexed Job passes ``$(JOB_COMPLETION_INDEX)/N``) each index one share of the same
folders into the same collection. A file's shard depends only on its path relative to the folder given to
``chatir index`` (SHA-256 of the POSIX spelling), so it is the same on every machine, mount point and run:
a shard run again finds its own files already indexed and carries on where it stopped.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import BaseModel, Field, model_validator

from chatir.errors import ChatIRError

_SPEC = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")


class InvalidShardError(ChatIRError, ValueError):
    """A ``--shard`` that is not ``I/N`` with ``0 <= I < N`` (a ValueError too, so pydantic reports it)."""


def shard_of(key: str, count: int) -> int:
    """The shard (``0 .. count-1``) of a relative path ``key``: stable across machines, runs and Python versions."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


class Shard(BaseModel):
    """Shard ``index`` of ``count`` (0-based). On the wire ``{"index": 1, "count": 3}`` or ``"1/3"``."""

    index: int = Field(..., ge=0, description="This shard, counting from 0.")
    count: int = Field(..., ge=1, le=1_000_000, description="How many shards split the input.")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            index, count = _split(value)
            return {"index": index, "count": count}
        return value

    @model_validator(mode="after")
    def _index_below_count(self) -> Shard:
        if self.index >= self.count:
            raise InvalidShardError(_out_of_range(self.index, self.count))
        return self

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` -> Shard; :class:`InvalidShardError` with a message for people otherwise."""
        index, count = _split(text)
        if count < 1:
            raise InvalidShardError(f"Shard {text.strip()!r}: N (the number of shards) must be at least 1.")
        if index < 0 or index >= count:
            raise InvalidShardError(_out_of_range(index, count))
        return cls(index=index, count=count)

    def owns(self, key: str) -> bool:
        """Whether the file with relative path ``key`` belongs to this shard."""
        return self.count == 1 or shard_of(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _split(text: str) -> tuple[int, int]:
    match = _SPEC.match(text)
    if match is None:
        raise InvalidShardError(
            f"Shard {text!r} is not of the form I/N (shard I of N, counting from 0: e.g. 0/3, 1/3 and 2/3)."
        )
    return int(match.group(1)), int(match.group(2))


def _out_of_range(index: int, count: int) -> str:
    if count < 1:
        return f"Shard {index}/{count}: N (the number of shards) must be at least 1."
    return (
        f"Shard {index}/{count} does not exist: I counts from 0 and must be below N "
        f"(the {count} shards are 0/{count} .. {count - 1}/{count})."
    )


__all__ = ["InvalidShardError", "Shard", "shard_of"]
