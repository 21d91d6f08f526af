"""Search speed of the image index's backends, side by side, on synthetic collections.

    python benchmarks/search.py                               # 10K, 100K and 1M (about 20-30 min on 2 cores)
    python benchmarks/search.py --sizes 10000,100000 --queries 100

Backends (each row: p50/p95 wall latency and p50 CPU time per top-10 query, recall@10 against an exact
float32 scan, build time, memory):

* ``chatir``       -- what the product runs embedded: ``ImageIndex`` on the embedded store (``EdgeStore``, Qdrant
                      Edge in-process), full records returned with the hits (build = upserts of full records
                      through ``ImageIndex`` + quantisation; memory = RSS after closing and reopening it);
* ``qdrant-local`` -- qdrant-client's embedded mode (``query_points``, brute force in Python), the embedded store
                      of earlier versions; only up to 100K images (``--slow-max``): at 1M one query takes seconds
                      and the store alone needs GBs of Python objects;
* ``edge``         -- the embedded store's engine without ``ImageIndex`` (int8 scan + exact rescoring, keyword
                      payload indexes, only the filter fields as payload);
* ``edge-tq4``     -- the same with 4-bit TurboQuant codes instead of int8;
* ``edge-hnsw``    -- a Qdrant Edge shard with an HNSW graph (m=16, ef_construct=100, payload_m=16,
                      hnsw_ef=128), the approximate alternative; up to 100K by default (its build is slow);
* ``numpy``        -- exact float32 scan beside the store: payload filters as per-value bitsets OR-ed into a
                      mask, gather of the selected rows when the filter is selective, argpartition top-k.

Query kinds: ``none`` (no filter), ``scope`` (a user in 3 of the 50 channels + public, excluding the 5 best
in-scope images and 15 random ones, as after rejected results; ~16 % of the images) and ``channel`` (one
channel, ~4 %). Vectors are random unit vectors around 1000 cluster centres (``--data uniform``: no
clusters); queries are perturbed images. Backends take turns in blocks of 20 queries so that load from other
processes hits them alike; on a shared machine compare ratios and the CPU column.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatir.schemas import PUBLIC, SearchFilter
from retriever_service.index import ImageIndex, ImageRecord, Scope
from retriever_service.index.edge_store import EdgeStore

K = 10
BLOCK = 20
"""Queries (per kind) a backend runs in a row before the next backend's turn."""
CHANNELS = 50
SOURCES = 20
TAGS = 30
PUBLIC_SHARE = 0.05
ALL_BACKENDS = ("chatir", "qdrant-local", "edge", "edge-tq4", "edge-hnsw", "numpy")
KINDS = ("none", "scope", "channel")


# --- data ----------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    vectors: np.ndarray  # (n, d) float32, unit
    channels: np.ndarray  # (n, 3) int16, -1 = none
    public: np.ndarray  # (n,) bool
    sources: np.ndarray  # (n,) int16
    tags: np.ndarray  # (n, 2) int16, -1 = none

    @property
    def n(self) -> int:
        return len(self.vectors)

    def image_id(self, row: int) -> str:
        return f"{row:032x}"

    def allowed(self, row: int) -> list[str]:
        values = [f"C{c}" for c in dict.fromkeys(self.channels[row].tolist()) if c >= 0]
        return [*values, PUBLIC] if self.public[row] else values

    def payload(self, row: int) -> dict:
        return {
            "id": self.image_id(row),
            "allowed": self.allowed(row),
            "source": f"S{self.sources[row]}",
            "tags": [f"T{t}" for t in dict.fromkeys(self.tags[row].tolist()) if t >= 0],
        }

    def record(self, row: int) -> ImageRecord:
        payload = self.payload(row)
        return ImageRecord(
            id=payload["id"],
            uri=f"/bench/{row}.jpg",
            allowed=payload["allowed"],
            source=payload["source"],
            tags=payload["tags"],
            text=f"image {row}",
        )

    def batches(self, size: int = 2000) -> Iterator[tuple[list[str], np.ndarray, list[dict]]]:
        for start in range(0, self.n, size):
            rows = range(start, min(start + size, self.n))
            yield (
                [self.image_id(r) for r in rows],
                self.vectors[start : rows.stop],
                [self.payload(r) for r in rows],
            )


def make_corpus(n: int, dim: int, data: str, rng: np.random.Generator) -> Corpus:
    vectors = np.empty((n, dim), dtype=np.float32)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    for start in range(0, n, 100_000):
        stop = min(start + 100_000, n)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32)
        if data == "clustered":
            block = centres[rng.integers(0, len(centres), stop - start)] + 0.7 * block
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    counts = rng.integers(1, 4, n)
    channels = rng.integers(0, CHANNELS, (n, 3)).astype(np.int16)
    channels[np.arange(3)[None, :] >= counts[:, None]] = -1
    tags = rng.integers(0, TAGS, (n, 2)).astype(np.int16)
    tags[rng.random((n, 2)) < 0.5] = -1
    return Corpus(
        vectors, channels, rng.random(n) < PUBLIC_SHARE, rng.integers(0, SOURCES, n).astype(np.int16), tags
    )


@dataclass
class Query:
    vector: np.ndarray
    kind: str
    search_filter: SearchFilter | None
    exclude_ids: list[str]
    truth: list[int] = field(default_factory=list)  # rows of the exact top-k
    scope: Scope | None = None


def channel_mask(corpus: Corpus, allowed: list[str]) -> np.ndarray:
    chans = [int(a[1:]) for a in allowed if a != PUBLIC]
    mask = np.isin(corpus.channels, chans).any(axis=1)
    return mask | corpus.public if PUBLIC in allowed else mask


def make_queries(corpus: Corpus, count: int, kinds: list[str], rng: np.random.Generator) -> list[Query]:
    """Queries with their exact answers (float32 scan over the scope's mask)."""
    queries = []
    for _ in range(count):
        base = corpus.vectors[rng.integers(0, corpus.n)]
        vector = base + rng.standard_normal(base.shape[0]).astype(np.float32) * (0.5 / np.sqrt(base.shape[0]))
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        scores = corpus.vectors @ vector
        for kind in kinds:
            search_filter, exclude, mask = None, [], None
            if kind == "scope":
                allowed = [f"C{c}" for c in rng.choice(CHANNELS, 3, replace=False)] + [PUBLIC]
                search_filter, mask = SearchFilter(allowed=allowed), channel_mask(corpus, allowed)
                masked = np.where(mask, scores, -np.inf)
                best = np.argpartition(-masked, 5)[:5]
                exclude = sorted({*best.tolist(), *rng.integers(0, corpus.n, 15).tolist()})
                mask = mask.copy()
                mask[exclude] = False
            elif kind == "channel":
                allowed = [f"C{rng.integers(0, CHANNELS)}"]
                search_filter, mask = SearchFilter(allowed=allowed), channel_mask(corpus, allowed)
            masked = scores if mask is None else np.where(mask, scores, -np.inf)
            top = np.argpartition(-masked, K)[:K]
            ids = [corpus.image_id(r) for r in exclude]
            queries.append(
                Query(
                    vector,
                    kind,
                    search_filter,
                    ids,
                    top[np.argsort(-masked[top])].tolist(),
                    Scope.build(search_filter, ids),
                )
            )
    return queries


# --- backends ------------------------------------------------------------------------------------------
class NumpyExact:
    """Exact float32 search with payload filters compiled to bitsets (one per channel / public)."""

    def __init__(self, corpus: Corpus) -> None:
        self.vectors = corpus.vectors  # shared with the corpus: no copy
        self.n = corpus.n
        self.bitsets: dict[str, np.ndarray] = {}
        for c in range(CHANNELS):
            self.bitsets[f"C{c}"] = np.packbits((corpus.channels == c).any(axis=1))
        self.bitsets[PUBLIC] = np.packbits(corpus.public)
        self.extra_bytes = sum(b.nbytes for b in self.bitsets.values())

    def search(self, vector: np.ndarray, k: int, scope: Scope) -> list[int]:
        mask = None
        for key, values in scope.must:
            assert key == "allowed", "the benchmark filters on allowed only"
            words = [self.bitsets[v] for v in values if v in self.bitsets]
            bits = np.bitwise_or.reduce(words) if words else np.zeros((self.n + 7) // 8, np.uint8)
            mask = np.unpackbits(bits, count=self.n).astype(bool)
        if scope.excluded:
            mask = np.ones(self.n, bool) if mask is None else mask
            mask[[int(i, 16) for i in scope.excluded]] = False
        if mask is not None and mask.sum() < 0.25 * self.n:  # selective: score the selected rows only
            rows = np.flatnonzero(mask)
            scores = self.vectors[rows] @ vector
            top = np.argpartition(-scores, min(k, len(rows) - 1))[:k]
            return rows[top[np.argsort(-scores[top])]].tolist()
        scores = self.vectors @ vector
        if mask is not None:
            scores[~mask] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top])].tolist()


class EdgeHnsw:
    """A Qdrant Edge shard with an HNSW graph (the approximate alternative to the mirror's quantised scan)."""

    def __init__(self, corpus: Corpus, folder: Path, ef: int = 128) -> None:
        import qdrant_edge as qe

        self.qe = qe
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=corpus.vectors.shape[1], distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000, payload_m=16),
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=2048, default_segment_number=os.cpu_count() or 1
            ),
            max_search_threads=os.cpu_count() or 1,
        )
        self.shard = qe.EdgeShard.create(str(folder), config)
        for name in ("allowed", "source", "tags"):
            self.shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
        for ids, vectors, payloads in corpus.batches():
            points = [qe.Point(int(i, 16), v, p) for i, v, p in zip(ids, vectors, payloads, strict=True)]
            self.shard.update(qe.UpdateOperation.upsert_points(points))
        self.shard.optimize()
        self.params = qe.SearchParams(hnsw_ef=ef)

    def search(self, vector: np.ndarray, k: int, scope: Scope) -> list[int]:
        qe = self.qe
        query_filter = scope.to_edge_filter()
        if scope.excluded:  # this shard uses integer ids
            must = [qe.FieldCondition(key, match=qe.MatchAny(list(v))) for key, v in scope.must]
            query_filter = qe.Filter(
                must=must or None, must_not=[qe.HasIdCondition({int(i, 16) for i in scope.excluded})]
            )
        request = qe.QueryRequest(
            limit=k, query=qe.Query.Nearest(vector), filter=query_filter, params=self.params
        )
        return [int(p.id) for p in self.shard.query(request)]

    def close(self) -> None:
        self.shard.close()


@dataclass
class Backend:
    name: str
    search: Callable[[Query], list[int]]
    build_s: float
    memory_mb: float
    max_queries: int
    note: str = ""
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    recall: dict[str, list[float]] = field(default_factory=dict)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file()) / 2**20  # sparse files


def measure_build(build: Callable[[], object]) -> tuple[object, float, float]:
    gc.collect()
    before, started = rss_mb(), time.perf_counter()
    built = build()
    elapsed = time.perf_counter() - started
    gc.collect()
    return built, elapsed, rss_mb() - before


def build_backends(
    corpus: Corpus, names: list[str], args: argparse.Namespace, work: Path
) -> tuple[list[Backend], list]:
    from chatir.settings import Settings

    backends: list[Backend] = []
    closers: list = []
    n, dim = corpus.n, corpus.vectors.shape[1]
    slow_ok = n <= args.slow_max

    def rows_of(hits):
        return [int(record.id, 16) for record, _ in hits]

    if "numpy" in names:
        numpy_index, seconds, _ = measure_build(lambda: NumpyExact(corpus))
        memory = (corpus.vectors.nbytes + numpy_index.extra_bytes) / 2**20
        backends.append(
            Backend(
                "numpy",
                lambda q: numpy_index.search(q.vector, K, q.scope),
                seconds,
                memory,
                args.queries,
                "exact f32 + bitsets",
            )
        )
        print(f"  numpy built in {seconds:.1f}s", flush=True)

    for name, quantization in (("edge", "int8"), ("edge-tq4", "turbo4")):
        if name not in names:
            continue
        folder = work / name
        store, seconds, memory = measure_build(
            lambda folder=folder, quantization=quantization: fill_edge_store(corpus, folder, quantization)
        )
        closers.append(store.close)
        backends.append(
            Backend(
                name,
                lambda q, store=store: edge_rows(store, q),
                seconds,
                memory,
                args.queries,
                f"{quantization} scan + f32 rescore; disk {folder_mb(folder):.0f} MB",
            )
        )
        print(f"  {name} built in {seconds:.1f}s", flush=True)

    if "edge-hnsw" in names and n <= args.hnsw_max:
        folder = work / "edge-hnsw"
        hnsw, seconds, memory = measure_build(lambda: EdgeHnsw(corpus, folder))
        closers.append(hnsw.close)
        backends.append(
            Backend(
                "edge-hnsw",
                lambda q: hnsw.search(q.vector, K, q.scope),
                seconds,
                memory,
                args.queries,
                "HNSW m=16 ef=128",
            )
        )
        print(f"  edge-hnsw built in {seconds:.1f}s", flush=True)

    if "qdrant-local" in names and slow_ok:
        from qdrant_client import QdrantClient

        folder = work / "qdrant-local"

        def fill_local() -> ImageIndex:
            client = QdrantClient(path=str(folder))
            index = ImageIndex(Settings(CHATIR_HOME=work / "unused"), "bench", dim, client=client)
            fill_index(index, corpus)
            return index

        local, store_s, store_mb = measure_build(fill_local)
        closers.append(local.client.close)
        backends.append(
            Backend(
                "qdrant-local",
                lambda q: rows_of(local.search(q.vector, K, q.search_filter, q.exclude_ids)),
                store_s,
                store_mb,
                args.slow_queries,
                f"store on disk {folder_mb(folder):.0f} MB",
            )
        )
        print(f"  qdrant-local store filled in {store_s:.1f}s", flush=True)

    if "chatir" in names:
        settings = Settings(CHATIR_HOME=work / "home", CHATIR_COLLECTION="bench")

        def fill_chatir() -> None:
            with ImageIndex(settings, "bench", dim, progress=False) as index:
                fill_index(index, corpus)
                index.optimize()

        _, build_s, _ = measure_build(fill_chatir)
        index, reopen_s, opened_mb = measure_build(lambda: ImageIndex(settings, "bench", dim))
        closers.append(index.close)
        backends.append(
            Backend(
                "chatir",
                lambda q: rows_of(index.search(q.vector, K, q.search_filter, q.exclude_ids)),
                build_s,
                opened_mb,
                args.queries,
                f"ImageIndex, full records; reopened in {reopen_s:.2f} s; "
                f"disk {folder_mb(settings.qdrant_path):.0f} MB",
            )
        )
        print(f"  chatir built in {build_s:.1f}s, reopened in {reopen_s:.2f}s", flush=True)
    return backends, closers


def fill_index(index: ImageIndex, corpus: Corpus) -> None:
    for ids, vectors, _ in corpus.batches(1000):
        index.upsert([corpus.record(int(i, 16)) for i in ids], vectors)


def fill_edge_store(corpus: Corpus, folder: Path, quantization: str) -> EdgeStore:
    """The embedded store's engine alone: one collection with the filter fields as payload."""
    import uuid

    from qdrant_client import models

    store = EdgeStore(folder, quantization=quantization)
    store.create_collection("bench", models.VectorParams(size=corpus.vectors.shape[1], distance="Cosine"))
    for name in ("allowed", "source", "tags"):
        store.create_payload_index("bench", name, models.PayloadSchemaType.KEYWORD)
    for ids, vectors, payloads in corpus.batches():
        points = [
            models.PointStruct.model_construct(id=str(uuid.UUID(hex=i)), vector=v, payload=p)
            for i, v, p in zip(ids, vectors, payloads, strict=True)
        ]
        store.upsert("bench", points=points)
    store.optimize("bench")
    return store


def edge_rows(store: EdgeStore, query: Query) -> list[int]:
    import uuid

    response = store.query_points("bench", query.vector, query.scope.to_client_filter(), limit=K)
    return [int(uuid.UUID(str(p.id)).hex, 16) for p in response.points]


# --- running -------------------------------------------------------------------------------------------
def run_size(n: int, args: argparse.Namespace) -> list[str]:
    rng = np.random.default_rng(args.seed)
    kinds = args.kinds
    print(f"\n== {n:,} images x {args.dim}-d ({args.data}) ==", flush=True)
    corpus = make_corpus(n, args.dim, args.data, rng)
    queries = make_queries(corpus, args.queries, kinds, rng)
    work = Path(tempfile.mkdtemp(prefix=f"chatir-bench-{n}-", dir=args.workdir))
    try:
        backends, closers = build_backends(corpus, args.backends, args, work)
        for _ in range(3):  # warm-up
            for backend in backends:
                backend.search(queries[0])
        # Backends take turns in blocks of queries: load from other processes hits them alike, and each
        # runs with its own data warm in the CPU caches (a service's model forward between two searches
        # would evict some of it: small collections may then be a little slower than measured here).
        block = BLOCK * len(kinds)
        for start in range(0, len(queries), block):
            for backend in backends:
                for index in range(start, min(start + block, len(queries))):
                    if index // len(kinds) >= backend.max_queries:
                        break
                    query = queries[index]
                    wall, cpu = time.perf_counter(), time.process_time()
                    rows = backend.search(query)
                    backend.wall.setdefault(query.kind, []).append(time.perf_counter() - wall)
                    backend.cpu.setdefault(query.kind, []).append(time.process_time() - cpu)
                    backend.recall.setdefault(query.kind, []).append(len(set(rows) & set(query.truth)) / K)
                    excluded = {int(i, 16) for i in query.exclude_ids}
                    assert not set(rows) & excluded, f"{backend.name} returned an excluded id"
        for close in closers:
            close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = []
    for backend in backends:
        for kind in kinds:
            wall = np.array(backend.wall[kind]) * 1000
            cpu = np.array(backend.cpu[kind]) * 1000
            lines.append(
                f"| {n:>9,} | {backend.name:<12} | {kind:<7} | {np.median(wall):8.2f} | {np.percentile(wall, 95):8.2f} "
                f"| {np.median(cpu):8.2f} | {np.mean(backend.recall[kind]):6.4f} | {len(wall):4d} "
                f"| {backend.build_s:8.1f} | {backend.memory_mb:8.0f} | {backend.note} |"
            )
    skipped = [b for b in args.backends if b not in {x.name for x in backends}]
    if skipped:
        lines.append(
            f"| {n:>9,} | {', '.join(skipped)} | skipped at this size (see --slow-max / --hnsw-max) |"
        )
    for line in lines:
        print(line, flush=True)
    return lines


HEADER = (
    "| images    | backend      | query   | p50 ms   | p95 ms   | cpu ms   | recall | n    | build s  "
    "| mem MB   | notes |\n"
    "|----------:|--------------|---------|---------:|---------:|---------:|-------:|-----:|---------:|---------:|-------|"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated collection sizes")
    parser.add_argument("--dim", type=int, default=256, help="vector size (BLIP: 256, CLIP ViT-B: 512)")
    parser.add_argument("--queries", type=int, default=200, help="queries per kind")
    parser.add_argument("--slow-queries", type=int, default=20, help="queries per kind for qdrant-local")
    parser.add_argument(
        "--slow-max", type=int, default=100_000, help="largest size for qdrant-local / chatir"
    )
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest size for edge-hnsw")
    parser.add_argument(
        "--backends", default=",".join(ALL_BACKENDS), help=f"subset of {','.join(ALL_BACKENDS)}"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"subset of {','.join(KINDS)}")
    parser.add_argument("--data", choices=("clustered", "uniform"), default="clustered")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", default=None, help="where the temporary stores go (default: system temp)"
    )
    parser.add_argument("--progress", action="store_true", help="progress bars while building")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(args.backends) - set(ALL_BACKENDS) | set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown backends/kinds: {', '.join(sorted(unknown))}")
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    print(
        f"search benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, top-{K}", flush=True
    )
    lines = []
    for n in sizes:
        lines += run_size(n, args)
    print(
        f"\nload average at the end {os.getloadavg()[0]:.1f}; cpu ms = process CPU time per query (all threads)\n"
    )
    print(HEADER)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
