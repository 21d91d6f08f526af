"""The embedded store at 100K and 1M images: build, memory, reopen and filtered top-10, each in its own process.

    python benchmarks/embedded_store.py                       # 100K and 1M (about 15-25 min on 2 cores)
    python benchmarks/embedded_store.py --sizes 100000 --queries 50

What the product does without ``QDRANT_URL``: ``ImageIndex`` on the embedded store (Qdrant Edge in-process),
filled with full image records through ``ImageIndex.upsert`` (the indexer's call) and quantised with
``ImageIndex.optimize``. The build runs in one process (which also holds the synthetic corpus: its vectors, n x
256 x 4 bytes, are counted in that process's peak), then a fresh process reopens the store and runs the queries,
so its memory is the store's alone: resident set after opening and after the queries, and the peak.

Corpus and queries as in ``benchmarks/search.py``: random unit vectors around 1000 centres; ``scope`` = a user in
3 of 50 channels + public, excluding the 5 best in-scope images and 15 random ones (~16 % of the images);
``channel`` = one channel (~4 %); ``none`` = no filter. Recall@10 against an exact float32 scan.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

K = 10
DIM = 256


def memory_mb() -> dict[str, float]:
    """Resident set now, its peak, and now split into anonymous memory (the process's own: heap, the quantised
    vectors) and file pages (memory-mapped store files: page cache the kernel can drop and re-read), in MB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    names = {"VmRSS": "rss", "VmHWM": "peak", "RssAnon": "anon", "RssFile": "file"}
    return {short: values.get(name, float("nan")) for name, short in names.items()}


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file()) / 2**20


def build(home: Path, n: int, queries: int, seed: int) -> dict:
    from search import fill_index, make_corpus, make_queries

    from chatir.settings import Settings
    from retriever_service.index import ImageIndex

    rng = np.random.default_rng(seed)
    corpus = make_corpus(n, DIM, "clustered", rng)
    made = make_queries(corpus, queries, ["none", "scope", "channel"], rng)
    (home / "queries.pkl").write_bytes(
        pickle.dumps([(q.kind, q.vector, q.search_filter, q.exclude_ids, q.truth) for q in made])
    )
    started = time.perf_counter()
    with ImageIndex(Settings(CHATIR_HOME=home), "bench", DIM, progress=False) as index:
        fill_index(index, corpus)
        filled = time.perf_counter() - started
        index.optimize()
    return {
        "upsert_s": filled,
        "build_s": time.perf_counter() - started,
        "corpus_mb": corpus.vectors.nbytes / 2**20,
        "disk_mb": folder_mb(home / "qdrant"),
        **{f"build_{k}_mb": v for k, v in memory_mb().items()},
    }


def query(home: Path) -> dict:
    from chatir.settings import Settings
    from retriever_service.index import ImageIndex

    queries = pickle.loads((home / "queries.pkl").read_bytes())
    before = memory_mb()["rss"]
    started = time.perf_counter()
    index = ImageIndex(Settings(CHATIR_HOME=home), "bench", DIM, progress=False)
    reopen_s = time.perf_counter() - started
    opened = memory_mb()
    result: dict = {
        "reopen_s": reopen_s,
        "opened_mb": opened["rss"],
        "opened_anon_mb": opened["anon"],
        "python_mb": before,
        "count": index.count(),
    }
    for _, vector, search_filter, exclude_ids, _ in queries[:9]:  # warm-up
        index.search(vector, K, search_filter, exclude_ids)
    for kind in ("none", "scope", "channel"):
        wall, recall = [], []
        for got_kind, vector, search_filter, exclude_ids, truth in queries:
            if got_kind != kind:
                continue
            start = time.perf_counter()
            hits = index.search(vector, K, search_filter, exclude_ids)
            wall.append(time.perf_counter() - start)
            rows = {int(record.id, 16) for record, _ in hits}
            recall.append(len(rows & set(truth)) / K)
        result[kind] = {
            "p50_ms": float(np.median(wall) * 1000),
            "p95_ms": float(np.percentile(wall, 95) * 1000),
            "recall": float(np.mean(recall)),
            "n": len(wall),
        }
    result.update({f"after_{k}_mb": v for k, v in memory_mb().items()})
    index.close()
    home.with_name(home.name + ".query.json").write_text(
        json.dumps(result)
    )  # kept beside the (temporary) store
    return result


def run_child(stage: str, home: Path, *extra: str) -> dict:
    command = [sys.executable, __file__, "--stage", stage, "--home", str(home), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=100, help="queries per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", default=None, help="where the stores are built (default: the temp folder)"
    )
    parser.add_argument("--stage", choices=["build", "query"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "build":
        print(json.dumps(build(Path(args.home), args.n, args.queries, args.seed)))
        return
    if args.stage == "query":
        print(json.dumps(query(Path(args.home))))
        return

    from bench_models import machine_line

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"chatir-store-{n}-", dir=args.workdir) as work:
            home = Path(work)
            print(f"== {n:,} images: building", flush=True)
            built = run_child(
                "build", home, "--n", str(n), "--queries", str(args.queries), "--seed", str(args.seed)
            )
            print(f"   built in {built['build_s']:.0f} s; querying in a fresh process", flush=True)
            measured = run_child("query", home)
            assert measured["count"] == n, measured
            for kind in ("none", "scope", "channel"):
                m = measured[kind]
                rows.append(
                    f"| {n:>9,} | {kind:<7} | {m['p50_ms']:6.2f} | {m['p95_ms']:6.2f} | {m['recall']:.4f} | {m['n']} "
                    f"| {built['build_s']:6.0f} | {measured['reopen_s']:5.2f} "
                    f"| {measured['opened_anon_mb']:6.0f} | {measured['after_anon_mb']:6.0f} "
                    f"| {measured['after_file_mb']:6.0f} | {measured['after_peak_mb']:6.0f} "
                    f"| {built['build_anon_mb']:6.0f} ({built['corpus_mb']:.0f}) | {built['disk_mb']:6.0f} |"
                )
            print("\n".join(rows[-3:]), flush=True)
    print()
    print(machine_line())
    print(
        f"{args.queries} queries per kind, top-{K}, {DIM}-d; memory in MB: anonymous (the process's own) and "
        "file pages (memory-mapped store files, page cache the kernel can drop) of the resident set\n"
    )
    print(
        "| images | query | p50 ms | p95 ms | recall@10 | n | build s | reopen s | anon opened | anon after queries "
        "| file pages after queries | peak RSS (query process) | build anon at end (corpus in it) | disk MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
