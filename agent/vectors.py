"""Image embeddings carried by hits (``SearchRequest.with_vectors``).

A hit brings its embedding either as a JSON list (``Hit.vector``) or, as the agent asks the service, as the
base64 of its little-endian float32 bytes (``Hit.vector_base64``, ``vector_encoding="base64"``): exact, about
4x smaller on the wire and decoded without a Python float per value. A re-ranker pool is 1,000 hits of a few
hundred dimensions, so the list form cost a turn ~0.7 s in JSON alone (docs/performance.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np

from chatir.errors import ChatIRError
from chatir.schemas import Hit

_DTYPE = np.dtype("<f4")


def pack(vector: np.ndarray | Sequence[float]) -> str:
    """``vector`` as ``Hit.vector_base64`` carries it."""
    return base64.b64encode(np.asarray(vector, dtype=_DTYPE).tobytes()).decode("ascii")


def unpack(text: str) -> np.ndarray:
    """The float32 vector of a ``Hit.vector_base64`` (a clear error for anything else)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ChatIRError(f"a hit's vector_base64 is not base64: {error}") from None
    if not raw or len(raw) % _DTYPE.itemsize:
        raise ChatIRError(f"a hit's vector_base64 holds {len(raw)} bytes, not a float32 vector")
    return np.frombuffer(raw, dtype=_DTYPE).astype(np.float32)


def unpack_matrix(text: str, rows: int, dim: int) -> np.ndarray:
    """The ``(rows, dim)`` float32 matrix of a ``PoolResponse.vectors_base64`` (a clear error for anything else)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ChatIRError(f"a pool's vectors_base64 is not base64: {error}") from None
    if len(raw) != rows * dim * _DTYPE.itemsize:
        raise ChatIRError(
            f"a pool's vectors_base64 holds {len(raw)} bytes, not {rows} x {dim} float32 values"
        )
    return np.frombuffer(raw, dtype=_DTYPE).astype(np.float32).reshape(rows, dim)


def has_vector(hit: Hit) -> bool:
    return hit.vector_base64 is not None or hit.vector is not None


def hit_vector(hit: Hit) -> np.ndarray | None:
    """The hit's image embedding (float32), in whichever form it came; None without one."""
    if hit.vector_base64 is not None:
        return unpack(hit.vector_base64)
    if hit.vector is not None:
        return np.asarray(hit.vector, dtype=np.float32)
    return None


def hit_matrix(hits: Sequence[Hit]) -> np.ndarray | None:
    """``(len(hits), dim)`` embeddings when every hit carries one (of one size), else None."""
    if not hits or not all(has_vector(hit) for hit in hits):
        return None
    rows = [hit_vector(hit) for hit in hits]
    if len({row.shape for row in rows if row is not None}) != 1:
        raise ChatIRError("the hits' vectors differ in size")
    return np.stack(rows)  # type: ignore[arg-type]


def without_vectors(hits: Sequence[Hit]) -> list[Hit]:
    """The hits with their embeddings dropped (vectors never reach front-ends or the stored state)."""
    return [
        hit.model_copy(update={"vector": None, "vector_base64": None}) if has_vector(hit) else hit
        for hit in hits
    ]
