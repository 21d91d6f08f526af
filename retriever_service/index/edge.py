"""Fast in-process search for the embedded store: a Qdrant Edge shard mirroring its vectors.

qdrant-client's embedded ("local") mode scores every point in Python: 0.3-0.5 s per query at 100K
images, seconds with a filter. The mirror is Qdrant's own engine running in-process (``qdrant-edge-py``):
vectors plus the filter fields (``allowed``, ``source``, ``tags``, with keyword payload indexes), int8
scalar quantisation kept in RAM and an exact float32 rescoring of the best candidates. There is no HNSW
graph on purpose: on a 2-core machine a quantised full scan (or, with a filter, a scan of the points the
payload index selects) measured faster to build and near-exact (recall@10 1.0 in benchmarks/search.py),
where HNSW lost recall under selective filters.

The embedded Qdrant store stays the source of truth. The mirror lives in its own folder next to it and
is kept in sync on every write; a marker file says whether the last write completed. A missing, stale,
corrupt or foreign mirror is rebuilt from the store when the index opens.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever_service.index.filters import Scope
from retriever_service.index.records import FILTER_FIELDS

log = logging.getLogger(__name__)

SYNC_FILE = "chatir-sync.json"
SHARD_DIR = "shard"
FORMAT_VERSION = 1

OVERSAMPLING = 4.0
"""Candidates scored with quantised vectors per requested hit, rescored exactly in float32."""

QUANTIZATION = "int8"
"""Quantised copy of the vectors kept in RAM: ``int8`` (scalar) or ``turbo4`` (TurboQuant, 4 bits: ~1.4x
faster unfiltered scans at 1M images, recall@10 0.999-1.0 instead of 1.0 in benchmarks/search.py)."""

EXCLUDED_BY_LIMIT = 1000
"""Up to this many excluded ids are removed from ``k + n`` hits; more go into a ``must_not`` filter."""

INDEXING_THRESHOLD_KB = 2048
"""Segments larger than this get their int8 quantisation built by :meth:`EdgeMirror.optimize`."""

Batch = tuple[Sequence[str], np.ndarray, Sequence[dict[str, Any]]]
"""(image ids, vectors (n, dim), filter payloads) of some points."""


def _import_edge() -> Any:
    import qdrant_edge

    return qdrant_edge


class EdgeMirror:
    """Vectors + filter fields of one collection in a Qdrant Edge shard (exclusively opened).

    Use :meth:`open`; writes go through :meth:`upsert`, :meth:`set_filter_fields` and :meth:`delete`
    wrapped in :meth:`writing` (which marks the mirror stale until the write completed).
    """

    def __init__(self, folder: Path, dim: int, model_id: str, shard: Any, quantization: str) -> None:
        self.folder = folder
        self.dim = dim
        self.model_id = model_id
        self.quantization = quantization
        self._shard = shard
        self._qe = _import_edge()
        self._params = self._qe.SearchParams(
            quantization=self._qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
        )
        self._dirty = self._read_state() != "clean"

    # --- life cycle ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        folder: Path,
        *,
        dim: int,
        model_id: str,
        expected_count: int,
        rebuild_from: Callable[[], Iterator[Batch]],
        progress: bool = True,
        quantization: str | None = None,
    ) -> EdgeMirror:
        """Open the mirror in ``folder``; rebuild it with ``rebuild_from`` unless it is complete and in sync
        (marker says clean, same model and size, ``expected_count`` points)."""
        folder = Path(folder)
        quantization = quantization or QUANTIZATION
        mirror = cls._load(folder, dim=dim, model_id=model_id, quantization=quantization)
        if mirror is not None:
            if not mirror._dirty and mirror.count() == expected_count:
                return mirror
            log.info("fast search mirror at %s is stale; rebuilding it from the store", folder)
            mirror.close()
        mirror = cls._create(folder, dim=dim, model_id=model_id, quantization=quantization)
        mirror._fill(rebuild_from(), total=expected_count, progress=progress)
        return mirror

    @classmethod
    def _load(cls, folder: Path, *, dim: int, model_id: str, quantization: str) -> EdgeMirror | None:
        qe = _import_edge()
        state = _read_json(folder / SYNC_FILE)
        if (
            not (folder / SHARD_DIR).is_dir()
            or state.get("version") != FORMAT_VERSION
            or state.get("model_id") != model_id
            or state.get("dim") != dim
            or state.get("quantization") != quantization
        ):
            return None
        try:
            shard = qe.EdgeShard.load(str(folder / SHARD_DIR))
        except Exception as error:  # noqa: BLE001 -- a corrupt or half-written shard is rebuilt, never fatal
            log.warning("cannot load the fast search mirror at %s (%s); rebuilding it", folder, error)
            return None
        return cls(folder, dim, model_id, shard, quantization)

    @classmethod
    def _create(cls, folder: Path, *, dim: int, model_id: str, quantization: str) -> EdgeMirror:
        qe = _import_edge()
        if (folder / SHARD_DIR).exists():
            shutil.rmtree(folder / SHARD_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        mirror_state = {
            "version": FORMAT_VERSION,
            "model_id": model_id,
            "dim": dim,
            "quantization": quantization,
        }
        _write_json(folder / SYNC_FILE, {**mirror_state, "state": "dirty"})
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            # m=0: no HNSW graph. Search is a quantised scan of the points the filter selects.
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000, payload_m=0),
            quantization_config=_quantization_config(quantization),
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=INDEXING_THRESHOLD_KB, default_segment_number=_cpus()
            ),
            max_search_threads=_cpus(),  # the engine's default keeps one core free: too few on 2 cores
        )
        shard = qe.EdgeShard.create(str(folder / SHARD_DIR), config)
        for name in FILTER_FIELDS:
            shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
        return cls(folder, dim, model_id, shard, quantization)

    def _fill(self, batches: Iterable[Batch], *, total: int, progress: bool) -> None:
        from tqdm import tqdm

        with (
            self.writing(),
            tqdm(
                total=total, desc="building fast search", unit="img", disable=not progress or total < 10_000
            ) as bar,
        ):
            for ids, vectors, payloads in batches:
                self.upsert(ids, vectors, payloads)
                bar.update(len(ids))
        self.optimize()

    def close(self) -> None:
        if self._shard is None:
            return
        try:
            self._shard.flush()
            self._shard.close()
        finally:
            self._shard = None

    # --- writes ----------------------------------------------------------------------------------
    class _Writing:
        def __init__(self, mirror: EdgeMirror) -> None:
            self.mirror = mirror

        def __enter__(self) -> None:
            if not self.mirror._dirty:
                self.mirror._set_state("dirty")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            if exc_type is None:
                self.mirror._shard.flush()
                self.mirror._set_state("clean")
            # on error the marker stays "dirty": the next open rebuilds the mirror from the store

    def writing(self) -> EdgeMirror._Writing:
        """Context manager around a write of the store and the mirror: stale until both completed."""
        return EdgeMirror._Writing(self)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        qe = self._qe
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        points = [
            qe.Point(uuid.UUID(hex=i), vectors[row], _filter_fields(payload))
            for row, (i, payload) in enumerate(zip(ids, payloads, strict=True))
        ]
        if points:
            self._shard.update(qe.UpdateOperation.upsert_points(points))

    def set_filter_fields(self, image_id: str, payload: dict[str, Any]) -> None:
        self._shard.update(
            self._qe.UpdateOperation.overwrite_payload([uuid.UUID(hex=image_id)], _filter_fields(payload))
        )

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._shard.update(self._qe.UpdateOperation.delete_points([uuid.UUID(hex=i) for i in ids]))

    def optimize(self) -> bool:
        """Build the int8 quantisation of grown segments (blocking; seconds at 1M images)."""
        return bool(self._shard.optimize())

    # --- reads -----------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def search(self, vector: np.ndarray, k: int, scope: Scope) -> list[tuple[str, float]]:
        """Top-``k`` (image id, cosine) inside ``scope``."""
        return self.search_batch(np.asarray(vector, dtype=np.float32)[None, :], k, scope)[0]

    def search_batch(self, vectors: np.ndarray, k: int, scope: Scope) -> list[list[tuple[str, float]]]:
        """Top-``k`` (image id, cosine) inside ``scope`` for each row of ``vectors``.

        The scope's filters always run inside the engine's query. Excluded ids (up to
        ``EXCLUDED_BY_LIMIT``) are handled exactly without a ``must_not has_id`` filter, which makes the
        engine check every point (2-3x slower in benchmarks/search.py): the query asks for
        ``k + len(excluded)`` hits and the excluded ones are removed. Removing n ids from a ranked list
        promotes at most n hits, so the result is the exact top-k of scope minus excluded, and k hits
        come back whenever k such images exist.
        """
        qe = self._qe
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        excluded = set(scope.excluded)
        by_limit = 0 < len(excluded) <= EXCLUDED_BY_LIMIT
        edge_filter = (Scope(must=scope.must) if by_limit else scope).to_edge_filter()
        limit = k + len(excluded) if by_limit else k
        requests = [
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(row),
                filter=edge_filter,
                with_payload=False,
                params=self._params,
            )
            for row in vectors
        ]
        if len(requests) == 1:
            results = [self._shard.query(requests[0])]
        else:
            results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        found = [[(_hex(point.id), float(point.score)) for point in hits] for hits in results]
        return [[hit for hit in hits if hit[0] not in excluded][:k] for hits in found]

    # --- marker ----------------------------------------------------------------------------------
    def _read_state(self) -> str | None:
        return _read_json(self.folder / SYNC_FILE).get("state")

    def _set_state(self, state: str) -> None:
        _write_json(
            self.folder / SYNC_FILE,
            {
                "version": FORMAT_VERSION,
                "model_id": self.model_id,
                "dim": self.dim,
                "quantization": self.quantization,
                "state": state,
            },
        )
        self._dirty = state != "clean"


def _quantization_config(name: str) -> Any:
    qe = _import_edge()
    if name == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    if name == "turbo4":
        return qe.TurboQuantQuantizationConfig(always_ram=True, bits=qe.TurboQuantBitSize.Bits4)
    raise ValueError(f"unknown quantization {name!r}: int8 or turbo4")


def _cpus() -> int:
    return max(1, os.cpu_count() or 1)


def _filter_fields(payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": payload["id"], **{name: payload.get(name) for name in FILTER_FIELDS}}


def _hex(point: Any) -> str:
    return point.hex if isinstance(point, uuid.UUID) else uuid.UUID(str(point)).hex


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def edge_available() -> bool:
    """True when qdrant-edge-py can be imported."""
    try:
        _import_edge()
    except ImportError:
        return False
    return True


__all__ = ["OVERSAMPLING", "QUANTIZATION", "EdgeMirror", "edge_available"]
