"""Concurrent turns: ``POST /v1/search`` on loopback at 1, 8, 32 and 100 concurrent clients, with and without
micro-batching of the text encoder (``CHATIR_ENCODE_MAX_BATCH``), side by side.

    python benchmarks/service.py                        # the starter, 10K images (a few minutes)
    python benchmarks/service.py --models starter,blip-base --levels 1,8,32,100 --images 10000

Two ``chatir serve`` processes run at once on copies of the same store (an embedded Qdrant store filled with
``--images`` random 256-d image vectors with channel payloads; the search path is the product's): one with
batching (``CHATIR_ENCODE_MAX_BATCH=32``, window ``--window-ms``), one without (``=1``: every request waits for
the model lock, as before). For each concurrency level the two take turns (``--repeats`` rounds, order swapped
each round), so load from other processes hits both alike; the idle one uses no CPU. Each client is a thread with
its own HTTP connection making ``--requests`` / level searches of a growing dialog (benchmarks/load.py);
``--client async`` makes the clients coroutines on one event loop with raw keep-alive connections (the light
generator: on 2 cores the threaded one takes a large share of the CPU the service is measured on).
"service CPU ms/req" is the service process's user + system CPU time per request (3 warm-up requests per run
included): on a machine shared with other work it is steadier than wall-clock figures; "client CPU ms/req" is
the load generator's.
``blip-base`` is a BLIP-base-sized retriever with random weights, saved to a temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models import load, load_line, machine_line
from load import run_load, started_service


def prepare_home(home: Path, model: str, images: int) -> None:
    """A CHATIR_HOME whose embedded store holds ``images`` random image vectors for ``model``."""
    from search import make_corpus  # benchmarks/search.py

    from chatir.settings import Settings
    from retriever_service.index import ImageIndex
    from retriever_service.models import load_model

    settings = Settings(home=home, model=model, device="cpu")
    retrieval = load_model(model, device="cpu", settings=settings)
    corpus = make_corpus(images, retrieval.dim, "clustered", np.random.default_rng(0))
    with ImageIndex(settings, retrieval.model_id, retrieval.dim) as index:
        for start in range(0, images, 2000):
            rows = range(start, min(start + 2000, images))
            index.upsert([corpus.record(r) for r in rows], corpus.vectors[start : rows.stop])


def model_folder(name: str, work: Path) -> str:
    """``starter`` as it is; ``blip-base`` saved to a folder the service loads (real loader)."""
    if name != "blip-base":
        return name
    folder = work / "blip-base"
    if not folder.is_dir():
        load("blip-base").save(folder)
    return str(folder)


def bench_model(name: str, args: argparse.Namespace, work: Path) -> list[str]:
    model = model_folder(name, work)
    base = work / f"home-{name}"
    print(f"  {name}: filling a store with {args.images:,} images", flush=True)
    prepare_home(base, model, args.images)
    variants = {"batched": str(args.max_batch), "one-by-one": "1"}
    homes = {}
    for label in variants:
        homes[label] = work / f"home-{name}-{label}"
        shutil.copytree(base, homes[label])
    results: dict[tuple[int, str], list[dict]] = {}
    common = {"CHATIR_MODEL": model, "CHATIR_DEVICE": "cpu", "CHATIR_ENCODE_BATCH_WINDOW_MS": str(args.window_ms),
              "CHATIR_TEXT_FASTPATH": args.fastpath}  # fmt: skip
    with (
        started_service(
            {**common, "CHATIR_HOME": str(homes["batched"]), "CHATIR_ENCODE_MAX_BATCH": variants["batched"]}
        ) as (url_b, pid_b),  # fmt: skip
        started_service(
            {**common, "CHATIR_HOME": str(homes["one-by-one"]), "CHATIR_ENCODE_MAX_BATCH": "1"}
        ) as (url_s, pid_s),  # fmt: skip
    ):
        targets = {"batched": (url_b, pid_b), "one-by-one": (url_s, pid_s)}
        for level in [int(x) for x in args.levels.split(",")]:
            searches = max(2, args.requests // level)
            for repeat in range(args.repeats):
                order = list(targets) if repeat % 2 == 0 else list(reversed(targets))
                for label in order:
                    url, pid = targets[label]
                    cpu_before = _cpu_s(pid)
                    figures = run_load(
                        url, conversations=level, searches=searches, pid=pid, client=args.client
                    )
                    figures["cpu_s"] = _cpu_s(pid) - cpu_before
                    results.setdefault((level, label), []).append(figures)
                    print(f"    {name} {label} x{level}: {figures['requests_per_s']} req/s, "
                          f"p95 {figures['p95_ms']} ms", flush=True)  # fmt: skip
    rows = []
    for level in [int(x) for x in args.levels.split(",")]:
        single = _merged(results[(level, "one-by-one")])
        for label in variants:
            merged = _merged(results[(level, label)])
            ratio = merged["rps"] / single["rps"] if single["rps"] else 0.0
            rows.append(
                f"| {name} | {level} | {label} | {merged['requests']} | {merged['errors']} | {merged['rps']:.1f} | "
                f"{merged['p50']:.0f} | {merged['p95']:.0f} | {merged['cpu_ms']:.1f} | {merged['client_ms']:.1f} | "
                f"{ratio:.2f}x |"
            )
    return rows


def _merged(runs: list[dict]) -> dict:
    """Repeats of one cell: summed requests and errors, throughput over the summed wall time, median p50/p95."""
    wall = sum(r["wall_s"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    return {
        "requests": requests,
        "errors": sum(r["errors"] for r in runs),
        "rps": requests / wall if wall else 0.0,
        "p50": float(np.median([r["p50_ms"] for r in runs])),
        "p95": float(np.median([r["p95_ms"] for r in runs])),
        "cpu_ms": 1000.0 * sum(r["cpu_s"] for r in runs) / max(1, requests + 3 * len(runs)),
        "client_ms": float(np.median([r["client_cpu_ms_per_request"] for r in runs])),
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: less sensitive to other load than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="starter", help="starter, blip-base or a model folder")
    parser.add_argument("--levels", default="1,8,32,100", help="concurrent clients")
    parser.add_argument("--requests", type=int, default=200, help="searches per level and repeat (about)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--window-ms", type=float, default=2.0)
    parser.add_argument("--fastpath", default="auto", help="CHATIR_TEXT_FASTPATH of both services")
    parser.add_argument(
        "--client",
        choices=["threads", "async"],
        default="async",
        help="the load generator (benchmarks/load.py)",
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="chatir-service-bench-") as work:
        for name in args.models.split(","):
            rows += bench_model(name, args, Path(work))
    print()
    print(machine_line())
    print(f"{args.images:,} images, ~{args.requests} searches per level x {args.repeats} repeats, "
          f"batching window {args.window_ms} ms, max batch {args.max_batch}, {args.client} clients\n")  # fmt: skip
    print(
        "| model | clients | encoder | requests | errors | req/s | p50 ms | p95 ms | service CPU ms/req "
        "| client CPU ms/req | throughput vs one-by-one |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\n{load_line()}")


if __name__ == "__main__":
    main()
