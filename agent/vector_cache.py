"""Image embeddings the agent has already been sent, kept so that a re-ranker's pool need not bring them again.

A re-ranked turn reads thousands of candidates' embeddings (``CHATIR_RERANK_POOL``), and a conversation's next
turn, or another conversation over the same gallery, reads mostly the same ones. Moving them costs more than
the search itself (docs/performance.md: ~0.1 ms an embedding to read out of the store and ~0.05 ms to carry over
HTTP). An image id is a hash of the image's bytes and the service names the embedding space its vectors live
in (``PoolResponse.space``: store, serving collection, model), so an embedding kept under (space, id) is the
one the store holds; a reindex to another model is another space.

The cache holds only what the service has sent for a scoped pool, and the agent reads from it only the ids a
scoped pool returns, so it never widens what a conversation sees.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from cachetools import LRUCache


class VectorCache:
    """At most ``maxsize`` embeddings under (space, image id), the least recently used dropped first; thread-safe."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"a vector cache holds at least one embedding, not {maxsize}")
        self.maxsize = maxsize
        self._entries: LRUCache[tuple[str, str], np.ndarray] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, space: str, ids: Sequence[str]) -> list[np.ndarray | None]:
        """Each id's kept embedding, or None, in order."""
        with self._lock:
            return [self._entries.get((space, image_id)) for image_id in ids]

    def put_many(self, space: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Keep row i of ``vectors`` as ``ids[i]``'s embedding: a read-only copy of its own, so callers cannot
        alter it and an evicted row frees its memory."""
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
        rows = [_frozen(row) for row in np.asarray(vectors, dtype=np.float32)]
        with self._lock:
            for image_id, row in zip(ids, rows, strict=True):
                self._entries[(space, image_id)] = row


def _frozen(row: np.ndarray) -> np.ndarray:
    copy = row.copy()
    copy.setflags(write=False)
    return copy
