"""What the outcome log costs: a ``record()`` per turn (one SQLite transaction on a WAL file, or one PostgreSQL
transaction with ``--postgres``) and reading the log for ``chatir stats``.

    python benchmarks/outcomes.py --searches 5000 --turns 4
    python benchmarks/outcomes.py --postgres [--postgres-url postgresql://u:p@host/db]

Simulates ``--searches`` searches of ``--turns`` recorded turns each (start, answers, then found / none of these /
started over / abandoned, in turn), on a fresh file, and prints the per-turn write latency (p50, p95) and the
time to read and summarise the whole log. Compare runs side by side, never as a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.outcome_db import OutcomeDatabase, PostgresOutcomeDatabase, SqliteOutcomeDatabase
from agent.outcomes import OutcomeLog, summaries


@contextmanager
def log_database(args: argparse.Namespace, home: str) -> Iterator[OutcomeDatabase]:
    """SQLite under ``home``; with --postgres the given database or a throw-away server (fsync on)."""
    if not args.postgres:
        yield SqliteOutcomeDatabase(Path(home) / "outcomes.sqlite")
        return
    if args.postgres_url is not None:
        yield PostgresOutcomeDatabase(args.postgres_url)
        return
    from tests.postgres_server import start_server

    server = start_server(durable=True)  # fsync on, as in production (the tests' server runs without)
    try:
        yield PostgresOutcomeDatabase(server.create_database("bench_outcomes"))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=5000)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--postgres", action="store_true", help="the PostgreSQL log (CHATIR_STATE_URL's)")
    parser.add_argument("--postgres-url", help="an existing, empty database (default: a throw-away server)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, log_database(args, home) as database:
        log = OutcomeLog(database, abandon_after_s=1800)
        latencies: list[float] = []

        def record(cid: str, action: str, rounds: int, rank: int | None = None) -> None:
            start = time.perf_counter()
            log.record(cid, action, rounds=rounds, questioner="info_gain", rank=rank)
            latencies.append(time.perf_counter() - start)

        for i in range(args.searches):
            cid = f"{('slack', 'web', 'cli')[i % 3]}:{i}"
            record(cid, "started", 0)
            for turn in range(1, args.turns - 1):
                record(cid, "answered", turn)
            ending = i % 4
            if ending == 0:
                record(cid, "chosen", args.turns - 2, rank=1 + i % 10)
            elif ending == 1:
                record(cid, "rejected", args.turns - 2)
            elif ending == 2:
                record(cid, "restarted", args.turns - 2)
        log.clock = lambda: time.time() + 3600  # an hour later: the idle searches count as ended
        start = time.perf_counter()
        rows = summaries(log.searches())
        read_s = time.perf_counter() - start
        log.close()
    ms = sorted(x * 1000 for x in latencies)
    print("| log | searches | turns recorded | record p50 (ms) | record p95 (ms) | read + summarise (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    p95 = ms[int(0.95 * (len(ms) - 1))]
    kind = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"| {kind} | {args.searches:,} | {len(ms):,} | {statistics.median(ms):.3f} | {p95:.3f} "
        f"| {read_s * 1000:.1f} |"
    )
    overall = rows[0]
    print(
        f"\nsuccess rate {overall.success_rate:.3f}, Hits@10 {overall.hits_at[10]:.3f} (by construction 0.250)"
    )


if __name__ == "__main__":
    main()
