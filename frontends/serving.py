"""Running the HTTP apps in this process: uvicorn in a background thread, and the retriever service.

``chatir demo`` and ``chatir chat`` (when no service runs) start the retriever service here: the
:class:`~retriever_service.service.RetrieverService` (the only opener of the embedded store) behind its
own FastAPI app, served on a local port, so the conversation engine talks to it over HTTP exactly as it
does to a remote service.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from chatir.errors import ChatIRError

if TYPE_CHECKING:
    from chatir.settings import Settings
    from retriever_service.service import RetrieverService

PROBE_TIMEOUT_S = 2.0


class PortInUseError(ChatIRError):
    """The asked-for port is taken by another program."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from None
        raise ChatIRError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def bind_preferred(host: str, port: int) -> socket.socket:
    """``port`` when it is free, else any free port."""
    try:
        return bind_socket(host, port)
    except PortInUseError:
        return bind_socket(host, 0)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


class ThreadedServer:
    """An ASGI app under uvicorn in a daemon thread, on a socket bound beforehand (no port race)."""

    def __init__(
        self, app: Any, sock: socket.socket, *, log_level: str = "warning", name: str = "web"
    ) -> None:
        import uvicorn

        self.sock = sock
        self.url = url_of(sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{name}", daemon=True
        )

    def start(self, timeout_s: float = 30.0) -> str:
        """Start serving; returns the base URL once the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise ChatIRError(f"the server on {self.url} stopped while starting (see the log above)")
            if time.monotonic() > deadline:
                raise ChatIRError(f"the server on {self.url} did not start within {timeout_s:.0f} s")
            time.sleep(0.02)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalRetriever:
    """The retriever service running in this process; ``settings.service_url`` points at it."""

    service: RetrieverService
    url: str
    settings: Settings


@contextmanager
def local_retriever(
    settings: Settings, *, host: str = "127.0.0.1", port: int | None = None, command: str = "chat"
) -> Iterator[LocalRetriever]:
    """Open the retriever service (model + store) and serve its HTTP API from this process.

    ``port``: the port to prefer (default ``settings.port``, so other ``chatir`` commands find the service
    at the usual ``CHATIR_SERVICE_URL``); a free port is taken when it is busy, and the run file
    (:mod:`chatir.runfile`) tells other commands where it went.
    """
    from chatir import runfile
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    service = RetrieverService.open(settings)
    try:
        sock = bind_preferred(host, settings.port if port is None else port)
        with ThreadedServer(create_app(settings, service), sock, name="retriever") as server:
            runfile.announce(settings, server.url, command=command)
            try:
                yield LocalRetriever(
                    service, server.url, settings.model_copy(update={"service_url": server.url})
                )
            finally:
                runfile.withdraw(settings)
    finally:
        service.close()


@dataclass
class FoundService:
    """A retriever service that answered: where, and its ``/healthz``."""

    url: str
    health: dict[str, Any]


def running_service(settings: Settings) -> FoundService | None:
    """The service at ``settings.service_url``; else the one that announced this store in its run file (a
    demo whose service moved to another port); None when neither answers."""
    from chatir import runfile

    health = _health(settings.service_url)
    if health is not None:
        return FoundService(settings.service_url.rstrip("/"), health)
    announced = runfile.holder(settings)
    if announced is not None and announced.url != settings.service_url.rstrip("/"):
        health = _health(announced.url)
        if health is not None:
            return FoundService(announced.url, health)
    return None


def _health(url: str) -> dict[str, Any] | None:
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/healthz", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
