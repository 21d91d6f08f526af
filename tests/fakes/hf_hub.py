"""A local HTTP server that speaks the parts of the Hugging Face hub's protocol that ``snapshot_download`` uses,
serving model repositories from local folders.

Point ``HF_ENDPOINT`` at ``server.url``. Routes (as huggingface.co answers them):

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: repository info (``sha``, ``siblings``);
* ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file list (``type``, ``path``, ``size``, ``oid``, ``lfs``);
* ``HEAD|GET /{repo}/resolve/{rev}/{path}``: a file, with ``X-Repo-Commit``, ``ETag`` (``X-Linked-Etag`` and
  ``X-Linked-Size`` for LFS files) and ``Content-Length``; ``Range`` requests are honoured (resumed downloads).

Unknown repositories answer 404 with ``X-Error-Code: RepoNotFound``; every request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".bin")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Path] = {}
        self.requests: list[tuple[str, str]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, folder: Path) -> None:
        self.repos[repo_id] = Path(folder)

    def downloaded(self) -> list[str]:
        """Paths of the files sent with GET (not HEAD)."""
        return [
            path.split("/resolve/", 1)[1].split("/", 1)[1]
            for method, path in self.requests
            if method == "GET" and "/resolve/" in path
        ]

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the repository side ------------------------------------------------------------------
    def _files(self, repo_id: str) -> list[Path]:
        root = self.repos[repo_id]
        return sorted(p for p in root.rglob("*") if p.is_file())

    def _entry(self, repo_id: str, path: Path) -> dict:
        data = path.read_bytes()
        entry: dict = {
            "type": "file",
            "path": path.relative_to(self.repos[repo_id]).as_posix(),
            "size": len(data),
            "oid": _git_blob_oid(data),
        }
        if path.suffix in LFS_SUFFIXES:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _split(self, rest: str) -> tuple[str, str] | None:
        """``org/name/<tail>`` -> (repo id, tail) for a known repository."""
        parts = rest.split("/", 2)
        if len(parts) < 2:
            return None
        repo_id = f"{parts[0]}/{parts[1]}"
        if repo_id not in self.repos:
            return None
        return repo_id, parts[2] if len(parts) > 2 else ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, value: object) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self, code: str = "RepoNotFound") -> None:
        body = json.dumps({"error": "Repository not found"}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", "Repository not found")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.server.hub.requests.append(("HEAD" if head else "GET", path))
        if path.startswith("/api/models/"):
            self._api(path.removeprefix("/api/models/"))
            return
        split = self.server.hub._split(path.lstrip("/"))
        if split is None or not split[1].startswith("resolve/"):
            self._not_found()
            return
        repo_id, tail = split
        _, _revision, filename = tail.split("/", 2)
        file = self.server.hub.repos[repo_id] / filename
        if not file.is_file():
            self._not_found("EntryNotFound")
            return
        self._file(file, head=head)

    def _file(self, file: Path, *, head: bool) -> None:
        data = file.read_bytes()
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and not head:
            start = int(ranged.removeprefix("bytes=").split("-", 1)[0] or 0)
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        if file.suffix in LFS_SUFFIXES:
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{_git_blob_oid(data)}"')
        else:
            self.send_header("ETag", f'"{_git_blob_oid(data)}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _api(self, rest: str) -> None:
        split = self.server.hub._split(rest)
        if split is None:
            self._not_found()
            return
        repo_id, tail = split
        if tail == "" or tail.startswith("revision/"):
            siblings = [
                {"rfilename": e["path"]}
                for e in map(lambda p: self.server.hub._entry(repo_id, p), self.server.hub._files(repo_id))
            ]
            self._json(
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": COMMIT,
                    "private": False,
                    "siblings": siblings,
                }
            )
            return
        if tail.startswith("tree/"):
            parts = tail.split("/", 2)
            prefix = parts[2] if len(parts) > 2 else ""
            entries = [self.server.hub._entry(repo_id, p) for p in self.server.hub._files(repo_id)]
            self._json([e for e in entries if e["path"].startswith(prefix)])
            return
        self._not_found("EntryNotFound")
