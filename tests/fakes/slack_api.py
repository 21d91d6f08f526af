"""A local HTTP server that speaks the parts of Slack's Web API the bot uses, and records every call.

Point ``slack_sdk.WebClient(base_url=server.api_url)`` at it. It keeps a tiny workspace in memory:
channels with members, messages (with thread replies), and files (downloadable from ``url_private``
with the bot token). Rate limits can be injected per method (``server.rate_limit(method, times)``):
the next calls answer 429 with ``Retry-After: 1`` as Slack does.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T0001"
BOT_TOKEN = "xoxb-test-token"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeFile:
    id: str
    name: str
    mimetype: str
    content: bytes
    channels: list[str] = field(default_factory=list)
    user: str = "U1"
    title: str = ""


class FakeSlack:
    """The workspace state plus the recorded calls; thread-safe."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.members: dict[str, list[str]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.files: dict[str, FakeFile] = {}
        self.uploads: dict[str, bytes] = {}
        self._rate_limited: dict[str, int] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.base_url = ""

    # -- set-up helpers ----------------------------------------------------------------------------
    def add_channel(self, channel: str, members: list[str]) -> None:
        self.members[channel] = list(members)
        self.history.setdefault(channel, [])

    def add_file(
        self,
        name: str,
        content: bytes,
        mimetype: str = "image/png",
        channel: str | None = None,
        user: str = "U1",
    ) -> FakeFile:
        with self._lock:
            file_id = f"F{next(self._ids):06d}"
        fake = FakeFile(
            id=file_id,
            name=name,
            mimetype=mimetype,
            content=content,
            user=user,
            channels=[channel] if channel else [],
            title=name,
        )
        self.files[file_id] = fake
        return fake

    def rate_limit(self, method: str, times: int = 1) -> None:
        self._rate_limited[method] = times

    def next_ts(self) -> str:
        with self._lock:
            return f"{1700000000 + next(self._ts)}.000100"

    # -- inspection --------------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0, where=None) -> list[Call]:
        """Waits until ``count`` calls of ``method`` (matching ``where``) have arrived; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_to(method) if where is None or where(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [c.method for c in self.calls]
                raise AssertionError(f"expected {count} call(s) to {method}, got {len(found)}; calls: {seen}")
            time.sleep(0.02)

    def file_payload(self, fake: FakeFile) -> dict[str, Any]:
        return {
            "id": fake.id,
            "name": fake.name,
            "title": fake.title,
            "mimetype": fake.mimetype,
            "filetype": fake.mimetype.split("/")[-1],
            "user": fake.user,
            "size": len(fake.content),
            "channels": fake.channels,
            "url_private": f"{self.base_url}/files/{fake.id}",
            "url_private_download": f"{self.base_url}/files/{fake.id}?download=1",
        }

    # -- the Web API -------------------------------------------------------------------------------
    def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(args)

    def api_auth_test(self, args):
        return {
            "ok": True,
            "url": "https://fake.slack.test/",
            "team": "Fake",
            "user": "chatir",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def api_chat_postMessage(self, args):
        ts = self.next_ts()
        message = {"ts": ts, "text": args.get("text", ""), "user": BOT_USER_ID, "bot_id": BOT_ID}
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        self.history.setdefault(args.get("channel", ""), []).append(message)
        return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": message}

    def api_chat_update(self, args):
        return {
            "ok": True,
            "channel": args.get("channel"),
            "ts": args.get("ts"),
            "text": args.get("text", ""),
        }

    def api_chat_postEphemeral(self, args):
        return {"ok": True, "message_ts": self.next_ts()}

    # the assistant side panel (assistant:write): as Slack, channel_id and thread_ts are required
    def _assistant_thread_call(self, args, *required: str):
        missing = [name for name in ("channel_id", "thread_ts", *required) if not args.get(name)]
        if missing:
            return {"ok": False, "error": "invalid_arguments", "missing": missing}
        return {"ok": True}

    def api_assistant_threads_setStatus(self, args):
        return self._assistant_thread_call(args)  # an empty status clears it: still required as a key

    def api_assistant_threads_setTitle(self, args):
        return self._assistant_thread_call(args, "title")

    def api_assistant_threads_setSuggestedPrompts(self, args):
        prompts = args.get("prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not prompts or len(prompts) > 4 or not all({"title", "message"} <= set(p) for p in prompts):
            return {"ok": False, "error": "invalid_arguments"}
        return self._assistant_thread_call(args)

    def api_files_getUploadURLExternal(self, args):
        with self._lock:
            file_id = f"FUP{next(self._ids):05d}"
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.base_url}/upload/{file_id}"}

    def api_files_completeUploadExternal(self, args):
        files = args.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        out = []
        for item in files or []:
            content = self.uploads.get(item["id"])
            if content is None:
                return {"ok": False, "error": "file_not_found"}
            fake = FakeFile(
                id=item["id"],
                name=item.get("title") or item["id"],
                mimetype="image/jpeg",
                content=content,
                user=BOT_USER_ID,
                title=item.get("title") or "",
            )
            if args.get("channel_id"):
                fake.channels = [args["channel_id"]]
            self.files[fake.id] = fake
            out.append({"id": fake.id, "title": fake.title})
        return {"ok": True, "files": out}

    def api_files_info(self, args):
        fake = self.files.get(args.get("file", ""))
        if fake is None:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": self.file_payload(fake)}

    def _page(self, items: list, args, key: str):
        limit = int(args.get("limit") or 100)
        start = int(args.get("cursor") or 0)
        page = items[start : start + limit]
        next_cursor = str(start + limit) if start + limit < len(items) else ""
        return {"ok": True, key: page, "response_metadata": {"next_cursor": next_cursor}}

    def api_conversations_members(self, args):
        channel = args.get("channel", "")
        if channel not in self.members:
            return {"ok": False, "error": "channel_not_found"}
        return self._page(self.members[channel], args, "members")

    def api_users_conversations(self, args):
        user = args.get("user") or BOT_USER_ID
        channels = [{"id": c, "is_member": True} for c, m in self.members.items() if user in m]
        return self._page(channels, args, "channels")

    def api_conversations_history(self, args):
        channel = args.get("channel", "")
        if channel not in self.history:
            return {"ok": False, "error": "channel_not_found"}
        newest_first = list(reversed(self.history[channel]))
        out = self._page(newest_first, args, "messages")
        out["has_more"] = bool(out["response_metadata"]["next_cursor"])
        return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        fake = self.server.fake
        parsed = urlparse(self.path)
        if parsed.path.startswith("/files/"):
            if self.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
                self._reply(403, b"forbidden", "text/plain")
                return
            file = fake.files.get(parsed.path.split("/")[-1])
            if file is None:
                self._reply(404, b"not found", "text/plain")
                return
            self._reply(200, file.content, file.mimetype)
            return
        if parsed.path.startswith("/api/"):
            self._api(parsed.path[5:], {k: v[0] for k, v in parse_qs(parsed.query).items()})
            return
        self._reply(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        parsed = urlparse(self.path)
        if parsed.path.startswith("/upload/"):
            file_id = parsed.path.split("/")[-1]
            fake.uploads[file_id] = raw
            with fake._lock:
                fake.calls.append(Call("upload", {"file_id": file_id, "bytes": len(raw)}, dict(self.headers)))
            self._reply(200, b"OK - %d" % len(raw), "text/plain")
            return
        if not parsed.path.startswith("/api/"):
            self._reply(404, b"not found", "text/plain")
            return
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            args = json.loads(raw or b"{}")
        else:
            args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        args.update({k: v[0] for k, v in parse_qs(parsed.query).items()})
        self._api(parsed.path[5:], args)

    def _api(self, method: str, args: dict[str, Any]) -> None:
        fake = self.server.fake
        for key in ("blocks", "files", "attachments", "prompts", "metadata"):
            if isinstance(args.get(key), str):
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(args[key])
        with fake._lock:
            fake.calls.append(Call(method, args, dict(self.headers)))
            limited = fake._rate_limited.get(method, 0)
            if limited:
                fake._rate_limited[method] = limited - 1
        if limited:
            self._reply(
                429, json.dumps({"ok": False, "error": "ratelimited"}).encode(), headers={"Retry-After": "1"}
            )
            return
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth else args.get("token", "")
        if token != BOT_TOKEN:
            self._reply(200, json.dumps({"ok": False, "error": "invalid_auth"}).encode())
            return
        self._reply(200, json.dumps(fake.handle(method, args)).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSlack


class SlackAPIServer:
    """Context manager: ``with SlackAPIServer() as slack: WebClient(base_url=slack.api_url)``."""

    def __init__(self) -> None:
        self.fake = FakeSlack()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self.fake
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self.api_url = self.base_url + "/api/"
        self.fake.base_url = self.base_url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self.fake

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
