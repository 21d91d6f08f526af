"""Load on a running retriever service: many concurrent conversations, each a few searches, as a chat makes them.

    python benchmarks/load.py                                    # starts `chatir serve` (CHATIR_MODEL), 100 x 5
    python benchmarks/load.py --url http://127.0.0.1:8600 --conversations 100 --searches 5
    python benchmarks/load.py --conversations 20 --searches 3 --json   # what tests/test_service_load.py runs

Each conversation is a thread with its own HTTP client; its i-th search sends the dialog with i rounds (a
description, then question/answer rounds), like a chat after i answers. Reported: requests, errors (any
non-200 or transport failure), wall-clock p50/p95 per request, requests per second, and the service
process's resident memory before, after a warm-up and after the run (its growth is the leak check). Numbers
depend on the machine and its load: compare runs side by side, never as a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = ("a red star on a blue background", "two green circles", "a small yellow square in the corner",
            "a striped purple heart", "a dark picture with a frame")  # fmt: skip
ROUNDS = (("is there a star?", "yes"), ("what colour is the background?", "blue"), ("how many shapes?", "2"),
          ("is it dark?", "no"), ("is the star large?", "yes"))  # fmt: skip


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def started_service(env: dict[str, str] | None = None, *, timeout_s: float = 300.0):
    """``chatir serve`` in a child process on a free port; yields (url, pid)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from frontends.main import main; main()", "serve", "--port", str(port),
         "--log-level", "warning"],
        env={**os.environ, **(env or {})}, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not get ready within {timeout_s:.0f} s")
            time.sleep(0.3)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def run_load(url: str, *, conversations: int, searches: int, pid: int | None = None,
             api_key: str | None = None, k: int = 10) -> dict[str, Any]:  # fmt: skip
    """Run the load against ``url``; a dict of the figures (see the module docstring)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(conversation: int, rounds: int) -> dict[str, Any]:
        dialog = {"caption": CAPTIONS[conversation % len(CAPTIONS)],
                  "rounds": [{"question": q, "answer": a} for q, a in ROUNDS[:rounds]]}  # fmt: skip
        return {"dialog": dialog, "k": k}

    with httpx.Client(base_url=url, headers=headers, timeout=60) as warm:  # model and index warm
        for _ in range(3):
            warm.post("/v1/search", json=body(0, 2))
    rss_start = _rss_mb(pid) if pid else None
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def conversation(index: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            for i in range(searches):
                started = time.perf_counter()
                try:
                    response = client.post("/v1/search", json=body(index, min(i, len(ROUNDS))))
                    problem = None if response.status_code == 200 else f"HTTP {response.status_code}"
                    if problem is None and len(response.json()["hits"]) == 0:
                        problem = "no hits"
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if problem:
                        errors.append(problem)

    started = time.perf_counter()
    with ThreadPoolExecutor(conversations) as pool:
        list(pool.map(conversation, range(conversations)))
    wall = time.perf_counter() - started
    rss_end = _rss_mb(pid) if pid else None
    ms = np.asarray(latencies) * 1000.0
    return {
        "conversations": conversations, "searches_each": searches, "requests": len(latencies),
        "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
        "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "requests_per_s": round(len(latencies) / wall, 1), "wall_s": round(wall, 1),
        "rss_mb_after_warmup": round(rss_start, 1) if rss_start else None,
        "rss_mb_after_run": round(rss_end, 1) if rss_end else None,
        "rss_growth_mb": round(rss_end - rss_start, 1) if rss_start and rss_end else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url", help="a running service (default: start `chatir serve` with CHATIR_* from the env)"
    )
    parser.add_argument("--pid", type=int, help="its process id, for the memory figures (with --url)")
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--searches", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.url:
        figures = run_load(args.url, conversations=args.conversations, searches=args.searches, pid=args.pid,
                           api_key=os.environ.get("CHATIR_API_KEY"))  # fmt: skip
    else:
        with started_service() as (url, pid):
            figures = run_load(url, conversations=args.conversations, searches=args.searches, pid=pid,
                               api_key=os.environ.get("CHATIR_API_KEY"))  # fmt: skip
    if args.json:
        print(json.dumps(figures))
        return
    print("| figure | value |\n|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
