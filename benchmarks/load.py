"""Load on a running retriever service: many concurrent conversations, each a few searches, as a chat makes them.

    python benchmarks/load.py                                    # starts `chatir serve` (CHATIR_MODEL), 100 x 5
    python benchmarks/load.py --url http://127.0.0.1:8600 --conversations 100 --searches 5
    python benchmarks/load.py --conversations 100 --searches 5 --client async      # the light generator

Each conversation is a thread with its own httpx client (``--client threads``, the default), or a coroutine on
one event loop with its own raw keep-alive connection (``--client async``: the light generator, for throughput
figures on a small machine where the generator shares the service's cores); its i-th search sends the dialog
with i rounds (a description, then question/answer rounds), like a chat after i answers. Reported: requests,
errors (any non-200, a reply without hits or a transport failure), wall-clock p50/p95 per request, requests
per second, the generator's own CPU time per request, and the service process's resident memory before,
after a warm-up and after the run (its growth is the leak check). Numbers depend on the machine and its load:
compare runs side by side, never as a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
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
from urllib.parse import urlsplit

import httptools
import httpx
import numpy as np
import uvloop

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


def _body(conversation: int, rounds: int, k: int) -> dict[str, Any]:
    """Conversation ``conversation``'s search after ``rounds`` answers."""
    dialog = {"caption": CAPTIONS[conversation % len(CAPTIONS)],
              "rounds": [{"question": q, "answer": a} for q, a in ROUNDS[:rounds]]}  # fmt: skip
    return {"dialog": dialog, "k": k}


def run_load(url: str, *, conversations: int, searches: int, pid: int | None = None,
             api_key: str | None = None, k: int = 10, client: str = "threads") -> dict[str, Any]:  # fmt: skip
    """Run the load against ``url``; a dict of the figures (see the module docstring). ``client``: ``threads``
    (a thread and an httpx client per conversation) or ``async`` (one event loop, a raw keep-alive connection per
    conversation: the light generator, see :func:`_async_conversations`)."""
    if client not in ("threads", "async"):
        raise ValueError(f"unknown client {client!r}: threads or async")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as warm:  # model and index warm
        for _ in range(3):
            warm.post("/v1/search", json=_body(0, 2, k))
    rss_start = _rss_mb(pid) if pid else None
    cpu_start = time.process_time()
    started = time.perf_counter()
    if client == "async":
        latencies, errors = _async_conversations(url, conversations, searches, headers, k)
    else:
        latencies, errors = _threaded_conversations(url, conversations, searches, headers, k)
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_start
    rss_end = _rss_mb(pid) if pid else None
    ms = np.asarray(latencies) * 1000.0
    return {
        "conversations": conversations, "searches_each": searches, "requests": len(latencies),
        "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
        "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "requests_per_s": round(len(latencies) / wall, 1), "wall_s": round(wall, 1),
        "client_cpu_ms_per_request": round(1000.0 * client_cpu / max(1, len(latencies)), 2),
        "rss_mb_after_warmup": round(rss_start, 1) if rss_start else None,
        "rss_mb_after_run": round(rss_end, 1) if rss_end else None,
        "rss_growth_mb": round(rss_end - rss_start, 1) if rss_start and rss_end else None,
    }  # fmt: skip


def _problem(status: int, hits: int) -> str | None:
    if status != 200:
        return f"HTTP {status}"
    return "no hits" if hits == 0 else None


def _threaded_conversations(
    url: str, conversations: int, searches: int, headers: dict[str, str], k: int
) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def conversation(index: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            for i in range(searches):
                started = time.perf_counter()
                try:
                    response = client.post("/v1/search", json=_body(index, min(i, len(ROUNDS)), k))
                    ok = response.status_code == 200
                    problem = _problem(response.status_code, len(response.json()["hits"]) if ok else 0)
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if problem:
                        errors.append(problem)

    with ThreadPoolExecutor(conversations) as pool:
        list(pool.map(conversation, range(conversations)))
    return latencies, errors


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; responses parsed by httptools (uvicorn's own parser)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.chunks = []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _async_conversations(
    url: str, conversations: int, searches: int, headers: dict[str, str], k: int
) -> tuple[list[float], list[str]]:
    """The light generator: every conversation a coroutine on one event loop (uvloop), with its own keep-alive
    connection and its requests serialised before the clock starts, so the load generator costs a fraction of
    a millisecond of CPU per request instead of the thread-and-httpx client's several (on a 2-core machine the
    generator otherwise competes with the service it measures)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())

    def raw(conversation: int, rounds: int) -> bytes:
        body = json.dumps(_body(conversation, rounds, k)).encode()
        head = (f"POST /v1/search HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n")  # fmt: skip
        return head.encode() + body

    requests = [[raw(c, min(i, len(ROUNDS))) for i in range(searches)] for c in range(conversations)]
    latencies: list[float] = []
    errors: list[str] = []

    async def conversation(index: int) -> None:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, host, port)
        try:
            for request in requests[index]:
                started = time.perf_counter()
                broken = False
                try:
                    status, payload = await asyncio.wait_for(connection.request(request), 120)
                    problem = _problem(status, len(json.loads(payload)["hits"]) if status == 200 else 0)
                except (OSError, TimeoutError, ValueError, KeyError) as error:
                    problem, broken = f"{type(error).__name__}: {error}", True
                latencies.append(time.perf_counter() - started)
                if problem:
                    errors.append(problem)
                transport = connection.transport
                if transport is not None and (broken or transport.is_closing()):  # mid-response or closed
                    transport.close()
                    _, connection = await loop.create_connection(_Connection, host, port)
        finally:
            if connection.transport is not None:
                connection.transport.close()

    async def everything() -> None:
        await asyncio.gather(*(conversation(c) for c in range(conversations)))

    uvloop.run(everything())
    return latencies, errors


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
    parser.add_argument(
        "--client", choices=["threads", "async"], default="threads", help="threads: a thread and an httpx "
        "client per conversation; async: the light generator (one event loop, raw keep-alive connections)"
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.url:
        figures = run_load(args.url, conversations=args.conversations, searches=args.searches, pid=args.pid,
                           api_key=os.environ.get("CHATIR_API_KEY"), client=args.client)  # fmt: skip
    else:
        with started_service() as (url, pid):
            figures = run_load(url, conversations=args.conversations, searches=args.searches, pid=pid,
                               api_key=os.environ.get("CHATIR_API_KEY"), client=args.client)  # fmt: skip
    if args.json:
        print(json.dumps(figures))
        return
    print("| figure | value |\n|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
