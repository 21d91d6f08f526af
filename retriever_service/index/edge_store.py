"""The embedded store: Qdrant collections run in-process by Qdrant's own engine (``qdrant-edge-py``).

:class:`EdgeStore` speaks the part of ``QdrantClient``'s API that ChatIR uses (collections with metadata,
aliases, payload indexes, upsert / retrieve / scroll / count / delete / payload updates, ``query_points``) and
answers with ``qdrant_client.models`` objects, so :class:`~retriever_service.index.ImageIndex`, the migration and
the re-index run the same code on it as on a Qdrant server (``QDRANT_URL``).

Each collection is one Qdrant Edge shard: vectors and payloads on disk (memory-mapped), an int8 copy of the
vectors in RAM once :meth:`EdgeStore.optimize` has built it, keyword and full-text payload indexes, and a
quantised scan of the points a filter selects with an exact float32 rescoring of the best candidates (no HNSW
graph: on a 2-core machine the scan measured faster to build and exact in recall@10 at 1M images, where HNSW lost
recall under selective filters; ``benchmarks/search.py``). What qdrant-client's own embedded mode could not do
(it keeps every point as Python objects: ~17 GB at 1M images, and scores in Python), this does in ~1-2 GB.

The folder holds ``catalog.json`` (each collection's vector size, metadata, payload indexes and shard folder;
the aliases), written atomically, and ``collections/<folder>/`` per collection. One process at a time opens it
(a lock file); a second gets the "already accessed" error that :func:`retriever_service.errors.is_store_lock_error`
recognises.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CATALOG = "catalog.json"
COLLECTIONS_DIR = "collections"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1

OVERSAMPLING = 4.0
"""Candidates scored with the quantised vectors per requested hit, rescored exactly in float32."""

QUANTIZATION = "int8"
"""Quantised copy of the vectors kept in RAM: ``int8`` (scalar) or ``turbo4`` (TurboQuant, 4 bits: ~1.4x
faster unfiltered scans at 1M images, recall@10 0.999-1.0 instead of 1.0 in benchmarks/search.py)."""

EXCLUDED_BY_LIMIT = 1000
"""A query excluding up to this many ids (``must_not has_id``) asks for ``limit + n`` hits without that condition
and drops the excluded ones (exact, and 2-3x faster than the condition, which makes the engine visit every
point); more go into the engine's filter."""

INDEXING_THRESHOLD_KB = 2048
"""Segments larger than this get their quantisation built by :meth:`EdgeStore.optimize`."""


def _qe() -> Any:
    import qdrant_edge

    return qdrant_edge


@dataclass(slots=True)
class ScoredPoint:
    """A query's hit with the attributes of qdrant-client's ``models.ScoredPoint`` (what the callers read), built
    ~20x faster than that pydantic model: a re-ranker's pool builds thousands a turn."""

    id: Any
    version: int
    score: float
    payload: Any
    vector: Any
    shard_key: Any = None
    order_value: Any = None


@dataclass
class _Collection:
    dim: int
    folder: str
    metadata: dict[str, Any] = field(default_factory=dict)
    payload_schema: dict[str, str] = field(default_factory=dict)
    shard: Any = None


class EdgeStore:
    """An embedded Qdrant store in ``path`` (created when missing), opened by this process alone."""

    def __init__(self, path: str | Path, *, quantization: str | None = None) -> None:
        import portalocker

        self.path = Path(path).expanduser()
        self.path.mkdir(parents=True, exist_ok=True)
        self.quantization = quantization or QUANTIZATION
        self._lock_file = open(self.path / LOCK_FILE, "a")  # noqa: SIM115 -- held until close()
        try:
            portalocker.lock(self._lock_file, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.LockException as error:
            self._lock_file.close()
            raise RuntimeError(
                f"Storage folder {self.path} is already accessed by another instance of the embedded store "
                "(one process at a time)."
            ) from error
        self._guard = threading.RLock()
        self._collections: dict[str, _Collection] = {}
        self._aliases: dict[str, str] = {}
        self._closed = False
        try:
            self._read_catalog()
        except BaseException:
            self.close()
            raise

    # --- catalog ---------------------------------------------------------------------------------
    def _read_catalog(self) -> None:
        file = self.path / CATALOG
        if not file.exists():
            self._write_catalog()
            return
        catalog = json.loads(file.read_text())
        if catalog.get("version") != FORMAT_VERSION:
            raise RuntimeError(
                f"The embedded store at {self.path} has format version {catalog.get('version')!r}; this version "
                f"of ChatIR reads version {FORMAT_VERSION}."
            )
        for name, entry in catalog.get("collections", {}).items():
            self._collections[name] = _Collection(
                dim=int(entry["dim"]),
                folder=str(entry["folder"]),
                metadata=dict(entry.get("metadata") or {}),
                payload_schema=dict(entry.get("payload_schema") or {}),
            )
        self._aliases = {str(k): str(v) for k, v in (catalog.get("aliases") or {}).items()}
        self._remove_orphans()

    def _write_catalog(self) -> None:
        catalog = {
            "version": FORMAT_VERSION,
            "collections": {
                name: {
                    "dim": entry.dim,
                    "folder": entry.folder,
                    "metadata": entry.metadata,
                    "payload_schema": entry.payload_schema,
                }
                for name, entry in self._collections.items()
            },
            "aliases": self._aliases,
        }
        tmp = self.path / (CATALOG + ".tmp")
        with open(tmp, "w") as out:
            json.dump(catalog, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path / CATALOG)

    def _remove_orphans(self) -> None:
        """Shard folders no catalog entry names: a collection created or deleted while the process died."""
        folder = self.path / COLLECTIONS_DIR
        if not folder.is_dir():
            return
        known = {entry.folder for entry in self._collections.values()}
        for child in folder.iterdir():
            if child.name not in known:
                shutil.rmtree(child, ignore_errors=True)

    def _resolve(self, name: str) -> str:
        return self._aliases.get(name, name)

    def _entry(self, name: str) -> _Collection:
        self._check_open()
        entry = self._collections.get(self._resolve(name))
        if entry is None:
            raise ValueError(f"Collection {name} not found")
        return entry

    def _shard(self, name: str) -> Any:
        entry = self._entry(name)
        if entry.shard is None:
            with self._guard:
                if entry.shard is None:
                    entry.shard = _qe().EdgeShard.load(str(self.path / COLLECTIONS_DIR / entry.folder))
        return entry.shard

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the embedded store at {self.path} is closed")

    # --- collections -----------------------------------------------------------------------------
    def collection_exists(self, collection_name: str) -> bool:
        self._check_open()
        return self._resolve(collection_name) in self._collections

    def create_collection(
        self,
        collection_name: str,
        vectors_config: Any,
        *,
        metadata: dict[str, Any] | None = None,
        **ignored: Any,
    ) -> bool:
        """A new collection (``vectors_config``: a ``models.VectorParams``; cosine only). Cluster options
        (``shard_number``, ``replication_factor``) are accepted and ignored, as qdrant-client's local mode does."""
        qe = _qe()
        distance = str(getattr(vectors_config.distance, "value", vectors_config.distance))
        if distance.lower() != "cosine":
            raise ValueError(f"the embedded store keeps cosine collections only, not {distance}")
        with self._guard:
            self._check_open()
            if collection_name in self._collections or collection_name in self._aliases:
                raise ValueError(f"Collection {collection_name} already exists")
            folder = uuid.uuid4().hex
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(
                    size=int(vectors_config.size), distance=qe.Distance.Cosine, on_disk=True
                ),  # the float32 vectors stay memory-mapped (read to rescore); the quantised copy is in RAM
                # m=0: no HNSW graph; search is a quantised scan of the points the filter selects.
                hnsw_config=qe.HnswIndexConfig(
                    m=0, ef_construct=100, full_scan_threshold=10_000, payload_m=0
                ),
                quantization_config=_quantization_config(self.quantization),
                optimizers=qe.EdgeOptimizersConfig(
                    # one segment: a query scans its segments one after the other in the calling thread, so
                    # more segments only add overhead (300K images: 12 vs 20 ms unfiltered, 6 vs 10 ms scoped)
                    indexing_threshold=INDEXING_THRESHOLD_KB,
                    default_segment_number=1,
                ),
                max_search_threads=_cpus(),  # the engine's default keeps one core free: too few on 2 cores
            )
            shard = qe.EdgeShard.create(str(self.path / COLLECTIONS_DIR / folder), config)
            self._collections[collection_name] = _Collection(
                dim=int(vectors_config.size), folder=folder, metadata=dict(metadata or {}), shard=shard
            )
            self._write_catalog()
        return True

    def get_collection(self, collection_name: str) -> Any:
        """qdrant-client's ``CollectionInfo`` with the fields the embedded store knows (vector size and distance,
        metadata, payload indexes, point count); the server-only ones (optimizer, WAL, HNSW settings) are unset."""
        from qdrant_client import models

        entry = self._entry(collection_name)
        vectors = models.VectorParams(size=entry.dim, distance=models.Distance.COSINE)
        return models.CollectionInfo.model_construct(
            config=models.CollectionConfig.model_construct(
                params=models.CollectionParams.model_construct(vectors=vectors), metadata=dict(entry.metadata)
            ),
            payload_schema=dict(entry.payload_schema),
            points_count=self._count(collection_name, None),
        )

    def get_collections(self) -> Any:
        from qdrant_client import models

        self._check_open()
        return models.CollectionsResponse(
            collections=[models.CollectionDescription(name=name) for name in self._collections]
        )

    def delete_collection(self, collection_name: str, **ignored: Any) -> bool:
        with self._guard:
            self._check_open()
            entry = self._collections.pop(collection_name, None)
            if entry is None:
                return False
            self._aliases = {a: c for a, c in self._aliases.items() if c != collection_name}
            self._write_catalog()
            if entry.shard is not None:
                entry.shard.close()
            shutil.rmtree(self.path / COLLECTIONS_DIR / entry.folder, ignore_errors=True)
        return True

    def create_payload_index(
        self, collection_name: str, field_name: str, field_schema: Any, **ignored: Any
    ) -> None:
        """A keyword index (``PayloadSchemaType.KEYWORD``) or a full-text index (``TextIndexParams``)."""
        qe = _qe()
        kind = (
            "text"
            if hasattr(field_schema, "tokenizer")
            else str(getattr(field_schema, "value", field_schema))
        )
        if kind == "text":
            schema = qe.TextIndexParams(tokenizer=qe.TokenizerType.Word, lowercase=True)
        elif kind == "keyword":
            schema = qe.PayloadSchemaType.Keyword
        else:
            raise ValueError(f"the embedded store indexes keyword and text fields, not {kind!r}")
        with self._guard:
            entry = self._entry(collection_name)
            self._shard(collection_name).update(qe.UpdateOperation.create_field_index(field_name, schema))
            entry.payload_schema[field_name] = kind
            self._write_catalog()

    # --- aliases ---------------------------------------------------------------------------------
    def get_aliases(self) -> Any:
        from qdrant_client import models

        self._check_open()
        return models.CollectionsAliasesResponse(
            aliases=[
                models.AliasDescription(alias_name=alias, collection_name=name)
                for alias, name in self._aliases.items()
            ]
        )

    def update_collection_aliases(self, change_aliases_operations: Sequence[Any], **ignored: Any) -> bool:
        """Create, delete and rename aliases, all at once (one catalog write)."""
        with self._guard:
            self._check_open()
            aliases = dict(self._aliases)
            for operation in change_aliases_operations:
                if getattr(operation, "create_alias", None) is not None:
                    change = operation.create_alias
                    if change.collection_name not in self._collections:
                        raise ValueError(f"Collection {change.collection_name} not found")
                    if change.alias_name in self._collections:
                        raise ValueError(f"{change.alias_name} is a collection, not an alias")
                    aliases[change.alias_name] = change.collection_name
                elif getattr(operation, "delete_alias", None) is not None:
                    if aliases.pop(operation.delete_alias.alias_name, None) is None:
                        raise ValueError(f"Alias {operation.delete_alias.alias_name} not found")
                elif getattr(operation, "rename_alias", None) is not None:
                    change = operation.rename_alias
                    if change.old_alias_name not in aliases:
                        raise ValueError(f"Alias {change.old_alias_name} not found")
                    aliases[change.new_alias_name] = aliases.pop(change.old_alias_name)
                else:
                    raise ValueError(f"unknown alias operation {operation!r}")
            self._aliases = aliases
            self._write_catalog()
        return True

    # --- points: writes --------------------------------------------------------------------------
    def upsert(self, collection_name: str, points: Any, wait: bool = True, **ignored: Any) -> None:
        """Insert or replace ``points`` (``PointStruct`` list or a ``models.Batch``)."""
        import numpy as np

        qe = _qe()
        entry = self._entry(collection_name)
        if hasattr(points, "ids"):  # models.Batch
            rows = list(
                zip(points.ids, points.vectors, points.payloads or [None] * len(points.ids), strict=True)
            )
        else:
            rows = [(p.id, p.vector, p.payload) for p in points]
        edge_points = []
        for point_id, vector, payload in rows:
            if isinstance(vector, dict):
                vector = vector.get("")
            array = np.asarray(vector, dtype=np.float32)
            if array.shape != (entry.dim,):
                raise ValueError(
                    f"Wrong input: Vector dimension error: expected dim: {entry.dim}, got {array.size}"
                )
            edge_points.append(qe.Point(_edge_id(point_id), array, payload or {}))
        if edge_points:
            self._shard(collection_name).update(qe.UpdateOperation.upsert_points(edge_points))

    def update_vectors(
        self, collection_name: str, points: Sequence[Any], wait: bool = True, **ignored: Any
    ) -> None:
        import numpy as np

        qe = _qe()
        vectors = [qe.PointVectors(_edge_id(p.id), np.asarray(p.vector, dtype=np.float32)) for p in points]
        self._shard(collection_name).update(qe.UpdateOperation.update_vectors(vectors))

    def overwrite_payload(
        self, collection_name: str, payload: dict[str, Any], points: Any, wait: bool = True, **ignored: Any
    ) -> None:
        qe = _qe()
        self._shard(collection_name).update(qe.UpdateOperation.overwrite_payload(_ids(points), payload))

    def set_payload(
        self, collection_name: str, payload: dict[str, Any], points: Any, wait: bool = True, **ignored: Any
    ) -> None:
        qe = _qe()
        self._shard(collection_name).update(qe.UpdateOperation.set_payload(_ids(points), payload))

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True, **ignored: Any) -> None:
        """Delete by ids (a list or ``PointIdsList``) or by filter (``FilterSelector``)."""
        qe = _qe()
        selector_filter = getattr(points_selector, "filter", None)
        if selector_filter is not None:
            operation = qe.UpdateOperation.delete_points_by_filter(to_edge_filter(selector_filter))
        else:
            operation = qe.UpdateOperation.delete_points(_ids(points_selector))
        self._shard(collection_name).update(operation)

    def optimize(self, collection_name: str) -> bool:
        """Build the quantisation of grown segments (blocking; seconds at 1M images) and flush."""
        shard = self._shard(collection_name)
        changed = bool(shard.optimize())
        shard.flush()
        return changed

    # --- points: reads ---------------------------------------------------------------------------
    def count(
        self, collection_name: str, count_filter: Any = None, exact: bool = True, **ignored: Any
    ) -> Any:
        from qdrant_client import models

        return models.CountResult(count=self._count(collection_name, count_filter))

    def _count(self, collection_name: str, count_filter: Any) -> int:
        qe = _qe()
        request = qe.CountRequest(exact=True, filter=to_edge_filter(count_filter))
        return int(self._shard(collection_name).count(request))

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[Any],
        with_payload: Any = True,
        with_vectors: bool = False,
        **ignored: Any,
    ) -> list[Any]:
        if not ids:
            return []
        records = self._shard(collection_name).retrieve(
            [_edge_id(i) for i in ids],
            with_payload=_payload_selector(with_payload),
            with_vector=bool(with_vectors),
        )
        return [_record(r, with_vectors) for r in records]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: Any = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: Any = True,
        with_vectors: bool = False,
        **ignored: Any,
    ) -> tuple[list[Any], Any]:
        qe = _qe()
        request = qe.ScrollRequest(
            offset=None if offset is None else _edge_id(offset),
            limit=int(limit),
            filter=to_edge_filter(scroll_filter),
            with_payload=_payload_selector(with_payload),
            with_vector=bool(with_vectors),
        )
        records, next_offset = self._shard(collection_name).scroll(request)
        return [_record(r, with_vectors) for r in records], None if next_offset is None else _client_id(
            next_offset
        )

    def query_points(
        self,
        collection_name: str,
        query: Any,
        query_filter: Any = None,
        limit: int = 10,
        with_payload: Any = False,
        with_vectors: bool = False,
        **ignored: Any,
    ) -> Any:
        """Nearest neighbours of ``query`` (a vector) inside ``query_filter``."""
        return self._query(collection_name, [(query, query_filter, limit, with_payload, with_vectors)])[0]

    def query_batch_points(self, collection_name: str, requests: Sequence[Any], **ignored: Any) -> list[Any]:
        return self._query(
            collection_name,
            [
                (r.query, r.filter, r.limit or 10, r.with_payload or False, bool(r.with_vector))
                for r in requests
            ],
        )

    def _query(self, collection_name: str, queries: list[tuple[Any, Any, int, Any, bool]]) -> list[Any]:
        import numpy as np
        from qdrant_client.http import models as rest

        qe = _qe()
        entry = self._entry(collection_name)
        params = qe.SearchParams(
            quantization=qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
        )
        requests, dropped = [], []
        for vector, query_filter, limit, with_payload, with_vectors in queries:
            array = np.ascontiguousarray(vector, dtype=np.float32)
            if array.shape != (entry.dim,):
                raise ValueError(
                    f"Wrong input: Vector dimension error: expected dim: {entry.dim}, got {array.size}"
                )
            kept_filter, excluded = _split_excluded(query_filter)
            dropped.append(excluded)
            requests.append(
                qe.QueryRequest(
                    limit=int(limit) + len(excluded),
                    query=qe.Query.Nearest(array),
                    filter=to_edge_filter(kept_filter),
                    with_payload=_payload_selector(with_payload),
                    with_vector=bool(with_vectors),
                    params=params,
                )
            )
        shard = self._shard(collection_name)
        if len(requests) == 1:
            results = [shard.query(requests[0])]
        else:
            results = shard.query_batch(qe.QueryBatchRequest(requests))
        responses = []
        for hits, excluded, (_, _, limit, _, with_vectors) in zip(results, dropped, queries, strict=True):
            points = [
                ScoredPoint(
                    id=point_id,
                    version=hit.version,
                    score=float(hit.score),
                    payload=hit.payload,
                    vector=_vector(hit.vector) if with_vectors else None,
                )
                for hit in hits
                if (point_id := _client_id(hit.id)) not in excluded
            ]
            responses.append(rest.QueryResponse.model_construct(points=points[: int(limit)]))
        return responses

    # --- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush every open collection and release the folder."""
        if self._closed:
            return
        self._closed = True
        failure: Exception | None = None
        try:
            for entry in self._collections.values():
                if entry.shard is None:
                    continue
                try:
                    entry.shard.flush()
                    entry.shard.close()
                except Exception as error:  # noqa: BLE001 -- close the others, then report the first
                    failure = failure or error
                finally:
                    entry.shard = None
            if failure is not None:
                raise failure
        finally:
            import portalocker

            portalocker.unlock(self._lock_file)
            self._lock_file.close()


# --- conversions -----------------------------------------------------------------------------------
def to_edge_filter(condition: Any) -> Any:
    """A ``qdrant_client.models.Filter`` as a ``qdrant_edge.Filter`` (None stays None). Supports the conditions
    ChatIR builds: field matches (value, any, except, text, text-any), ``has_id`` and nested filters."""
    if condition is None:
        return None
    from qdrant_client import models

    qe = _qe()

    def convert(item: Any) -> Any:
        if isinstance(item, models.Filter):
            return qe.Filter(must=group(item.must), should=group(item.should), must_not=group(item.must_not))
        if isinstance(item, models.HasIdCondition):
            return qe.HasIdCondition({_edge_id(i) for i in item.has_id})
        if isinstance(item, models.FieldCondition) and item.match is not None:
            match = item.match
            if isinstance(match, models.MatchAny):
                edge_match = qe.MatchAny(list(match.any))
            elif isinstance(match, models.MatchValue):
                edge_match = qe.MatchValue(match.value)
            elif isinstance(match, models.MatchExcept):
                edge_match = qe.MatchExcept(list(match.except_))
            elif isinstance(match, models.MatchTextAny):
                edge_match = qe.MatchTextAny(match.text_any)
            elif isinstance(match, models.MatchText):
                edge_match = qe.MatchText(match.text)
            else:
                raise ValueError(f"the embedded store cannot filter with {type(match).__name__}")
            return qe.FieldCondition(item.key, match=edge_match)
        raise ValueError(f"the embedded store cannot filter with {type(item).__name__}")

    def group(items: Any) -> list[Any] | None:
        if items is None:
            return None
        items = items if isinstance(items, list) else [items]
        return [convert(i) for i in items] or None

    return convert(condition)


def _split_excluded(query_filter: Any) -> tuple[Any, set[Any]]:
    """(the filter without its ``must_not has_id`` condition, the excluded ids) when that condition is the only
    ``must_not`` and excludes at most ``EXCLUDED_BY_LIMIT`` ids; else (the filter, no ids)."""
    from qdrant_client import models

    if not isinstance(query_filter, models.Filter) or not query_filter.must_not:
        return query_filter, set()
    must_not = query_filter.must_not if isinstance(query_filter.must_not, list) else [query_filter.must_not]
    if len(must_not) != 1 or not isinstance(must_not[0], models.HasIdCondition):
        return query_filter, set()
    excluded = {_client_id(_edge_id(i)) for i in must_not[0].has_id}
    if len(excluded) > EXCLUDED_BY_LIMIT:
        return query_filter, set()
    rest = query_filter.model_copy(update={"must_not": None})
    if not rest.must and not rest.should and not rest.min_should:
        return None, excluded
    return rest, excluded


def _edge_id(point_id: Any) -> Any:
    if isinstance(point_id, uuid.UUID):
        return point_id
    if isinstance(point_id, int):
        return point_id
    text = str(point_id)
    if text.isdigit():
        return int(text)
    return uuid.UUID(text)


def _client_id(point_id: Any) -> Any:
    """An id as qdrant-client gives it: an int, or a UUID's canonical string."""
    if isinstance(point_id, int):
        return point_id
    return str(point_id if isinstance(point_id, uuid.UUID) else uuid.UUID(str(point_id)))


def _ids(selector: Any) -> list[Any]:
    points = getattr(selector, "points", selector)
    return [_edge_id(i) for i in points]


def _payload_selector(with_payload: Any) -> Any:
    if isinstance(with_payload, bool) or with_payload is None:
        return bool(with_payload)
    return list(with_payload)


def _vector(vector: Any) -> Any:
    if isinstance(vector, dict):
        vector = vector.get("")
    if vector is None or isinstance(vector, list):  # the engine's lists are already Python floats: no copy
        return vector
    return [float(x) for x in vector]


def _record(record: Any, with_vectors: bool) -> Any:
    from qdrant_client import models

    return models.Record.model_construct(
        id=_client_id(record.id),
        payload=record.payload,
        vector=_vector(record.vector) if with_vectors else None,
        shard_key=None,
        order_value=None,
    )


def _quantization_config(name: str) -> Any:
    qe = _qe()
    if name == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    if name == "turbo4":
        return qe.TurboQuantQuantizationConfig(always_ram=True, bits=qe.TurboQuantBitSize.Bits4)
    raise ValueError(f"unknown quantization {name!r}: int8 or turbo4")


def _cpus() -> int:
    return max(1, os.cpu_count() or 1)


__all__ = [
    "EXCLUDED_BY_LIMIT",
    "INDEXING_THRESHOLD_KB",
    "OVERSAMPLING",
    "QUANTIZATION",
    "EdgeStore",
    "to_edge_filter",
]
