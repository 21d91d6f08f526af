"""Conversation-state writes per second: SQLite against PostgreSQL, several processes at once.

    python benchmarks/state_store.py                                  # starts a throw-away PostgreSQL server
    python benchmarks/state_store.py --postgres-url postgresql://u:p@host/db --processes 4 --writes 200

Each write is what a chat turn does to the store: read the conversation, then save it with compare-and-swap
(:meth:`save`), a ~2 KB state growing by one round. Two workloads: every process on its own conversations
(``spread``: the bot replicas' normal case), and every process on one conversation (``one``: the worst case,
each conflict retried as the user would). Printed: completed writes per second over all processes, conflicts,
and p50/p95 of one read-and-save. Both stores sync every commit to disk (SQLite's default, PostgreSQL's
``fsync=on``). Numbers depend on the machine and its load (and, for PostgreSQL, on the
network to it): compare rows side by side, never as a timed test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.state import ConcurrentUpdateError, ConversationState
from agent.state_backends import open_state_store
from chatir.dialog import Dialog, Round
from chatir.settings import Settings


def _worker(
    url: str, home: str, conversation: str, writes: int, start_at: float
) -> tuple[int, int, list[float], float]:
    store = open_state_store(Settings(home=Path(home), state_url=url))
    done, conflicts, latencies = 0, 0, []
    while time.time() < start_at:
        time.sleep(0.001)
    while done < writes:
        began = time.perf_counter()
        state = store.get(conversation) or ConversationState(
            conversation_id=conversation, dialog=Dialog(caption="a red star on a blue background")
        )
        assert state.dialog is not None
        rounds = [
            *state.dialog.rounds,
            Round(question="what colour is the background?", answer=f"blue {done}"),
        ]
        changed = state.model_copy(
            update={"dialog": Dialog(caption=state.dialog.caption, rounds=rounds[-40:])}
        )
        try:
            store.save(changed)
        except ConcurrentUpdateError:
            conflicts += 1
            continue
        latencies.append(time.perf_counter() - began)
        done += 1
    finished = time.time()
    store.close()
    return done, conflicts, latencies, finished


def run(url: str, home: str, processes: int, writes: int, shared: bool) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # every process imported and connected before the clock starts
    jobs = [
        (url, home, "one" if shared else f"c{i}-{time.monotonic_ns()}", writes, start_at)
        for i in range(processes)
    ]
    with context.Pool(processes) as pool:
        results = pool.starmap(_worker, jobs)
    elapsed = max(r[3] for r in results) - start_at  # wall clock until the last process finished
    latencies = sorted(x for r in results for x in r[2])
    total = sum(r[0] for r in results)
    return {
        "writes": total,
        "per_s": total / elapsed if elapsed else float("nan"),
        "conflicts": sum(r[1] for r in results),
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres-url", help="an existing database (default: start a throw-away server)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--writes", type=int, default=200, help="successful writes per process")
    args = parser.parse_args()

    server = None
    postgres = args.postgres_url
    if postgres is None:
        from tests.postgres_server import start_server

        server = start_server(durable=True)  # fsync on, as in production (the tests' server runs without)
        postgres = server.create_database("bench")
    try:
        rows = []
        with tempfile.TemporaryDirectory() as home:
            for name, url in (("SQLite (WAL)", f"sqlite:///{home}/state.sqlite"), ("PostgreSQL", postgres)):
                for shared in (False, True):
                    rows.append(
                        (
                            name,
                            "one" if shared else "spread",
                            run(url, home, args.processes, args.writes, shared),
                        )
                    )
    finally:
        if server is not None:
            server.stop()
    print(
        f"{args.processes} processes x {args.writes} writes, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print("| backend | conversations | writes | writes/s | conflicts | p50 ms | p95 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, kind, r in rows:
        print(
            f"| {name} | {kind} | {r['writes']:.0f} | {r['per_s']:.0f} | {r['conflicts']:.0f} "
            f"| {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |"
        )


if __name__ == "__main__":
    main()
