"""How fast does ``chatir migrate-index`` copy an index? Embedded -> embedded on synthetic points.

Builds an embedded collection of N random unit vectors with realistic payloads (the indexer's ImageRecord), then
times a full copy to another ChatIR home, a re-run where every point is already there (the resume path: read and
compare only), and a ``--verify-only`` pass, and prints a table. A Qdrant server target is network-bound
instead; run the same script with ``--to http://qdrant:6333`` to measure one.

    python benchmarks/migrate_index.py --points 5000 --dim 512
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chatir.settings import Settings
from retriever_service.index import ImageIndex, ImageRecord
from retriever_service.index.migrate import migrate_collection, target_settings


def build_source(settings: Settings, points: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with ImageIndex(settings, "bench-model", dim, fast=False, progress=False) as index:
        for start in range(0, points, 1000):
            n = min(1000, points - start)
            vectors = rng.normal(size=(n, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            records = [
                ImageRecord(
                    id=f"{start + i:032x}",
                    uri=f"/images/folder{(start + i) % 97}/img{start + i}.jpg",
                    mime="image/jpeg",
                    width=1024,
                    height=768,
                    allowed=["public", f"C{(start + i) % 13}"],
                    tags=["bench"],
                    text=f"img {start + i}",
                    file_size=123_456,
                    file_mtime=1.7e9 + start + i,
                )
                for i in range(n)
            ]
            index.upsert(records, vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--to", default=None, help="target (default: a temporary ChatIR home)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        source = Settings(_env_file=None, home=Path(work) / "source")
        started = time.perf_counter()
        build_source(source, args.points, args.dim)
        build_s = time.perf_counter() - started
        target = target_settings(source, args.to or f"path:{Path(work) / 'target'}")
        rows = [("build the source (upsert)", build_s, args.points)]
        for label, verify_only in (
            ("full copy", False),
            ("re-run (all already there)", False),
            ("verify only", True),
        ):
            started = time.perf_counter()
            report = migrate_collection(
                source, target, batch_size=args.batch_size, verify_only=verify_only, progress=False
            )
            rows.append((label, time.perf_counter() - started, report.source_count))
            assert report.verified

    print(f"\nmigrate-index, {args.points} points of {args.dim}-d, batches of {args.batch_size}, embedded -> "
          f"{'embedded' if args.to is None else args.to}\n")  # fmt: skip
    print(f"| {'step':<28} | {'seconds':>8} | {'points/s':>9} |")
    print(f"| {'-' * 28} | {'-' * 8}:| {'-' * 9}:|")
    for label, seconds, n in rows:
        print(f"| {label:<28} | {seconds:8.1f} | {n / seconds:9.0f} |")


if __name__ == "__main__":
    main()
