"""Run files: where the retriever service that holds a store can be reached.

Whoever opens a store and serves it (``chatir serve``, ``chatir demo``, ``chatir chat`` when it starts its own
service) writes ``CHATIR_HOME/run/service-<store>.json`` with its URL and process id, and removes it when it
stops. Other commands use it to find a service that moved to another port (8600 was busy), and the "store in
use" error names the holder's URL instead of a default. A file whose process is gone is ignored (a killed
service leaves one behind; the next holder overwrites it).
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from chatir.settings import Settings


class RunningService(BaseModel):
    """What a run file says."""

    url: str = Field(..., description="Base URL the service answers on, reachable from this machine.")
    pid: int
    store: str = Field(..., description="The store it holds: a Qdrant URL or an embedded folder.")
    command: str = Field(..., description="What started it: serve, demo, chat.")
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def store_location(settings: Settings) -> str:
    """The store a service holds (the embedded folder is locked as a whole, whatever the collection)."""
    return settings.qdrant_url or str(Path(settings.qdrant_path).expanduser().resolve())


def store_fingerprint(settings: Settings) -> str:
    """A short, non-revealing id of the store and collection (``/healthz``'s ``store_id``), so a CLI can
    tell whether a service holds *its* store."""
    key = f"{store_location(settings)}|{settings.collection}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def run_file(settings: Settings) -> Path:
    key = hashlib.sha256(store_location(settings).encode()).hexdigest()[:12]
    return Path(settings.home) / "run" / f"service-{key}.json"


def announce(settings: Settings, url: str, *, command: str) -> Path:
    """Record that this process serves ``settings``' store at ``url`` (atomically replaced)."""
    path = run_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = RunningService(
        url=url.rstrip("/"), pid=os.getpid(), store=store_location(settings), command=command
    )
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(info.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def withdraw(settings: Settings) -> None:
    """Remove the run file if this process wrote it."""
    path = run_file(settings)
    info = _read(path)
    if info is not None and info.pid == os.getpid():
        path.unlink(missing_ok=True)


def holder(settings: Settings) -> RunningService | None:
    """The live service that announced ``settings``' store, if any (a dead process's file is ignored)."""
    info = _read(run_file(settings))
    if info is None or not _alive(info.pid):
        return None
    return info


def _read(path: Path) -> RunningService | None:
    try:
        return RunningService.model_validate_json(path.read_text())
    except (OSError, ValueError, ValidationError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to ``host:port`` (any-address -> loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


__all__ = ["RunningService", "announce", "holder", "local_url", "run_file", "store_location", "withdraw"]
