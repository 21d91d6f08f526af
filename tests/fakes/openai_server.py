"""A local HTTP server speaking OpenAI's chat-completions protocol, for offline tests of real clients.

It plays scripted replies (plain answers, tool calls, errors) to ``POST /v1/chat/completions`` — with or
without ``stream=true`` (server-sent events, tool-call deltas included) — answers ``GET /v1/models``, checks
the bearer key when given one, and records every request so tests can assert what the client sent::

    with FakeOpenAIServer([Reply.call("search_images", {"caption": "a dog"}), Reply.text("Is it big?")]) as srv:
        model = ChatOpenAI(model="fake", base_url=srv.base_url, api_key="k")
        ...
        assert srv.requests[1]["messages"][-1]["role"] == "tool"

A reply may also be a callable ``(request_json) -> Reply`` (e.g. to answer from what the client sent).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Responder = Callable[[dict[str, Any]], "Reply"]


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class Reply:
    """One assistant turn (content and/or tool calls), or an HTTP error."""

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    status: int = 200
    error: str | None = None
    delay_s: float = 0.0

    @classmethod
    def text(cls, content: str) -> Reply:
        return cls(content=content)

    @classmethod
    def call(cls, name: str, arguments: dict[str, Any] | str, *, id: str | None = None) -> Reply:
        return cls(tool_calls=[ToolCall(name, arguments, id)])

    @classmethod
    def calls(cls, *calls: ToolCall) -> Reply:
        return cls(tool_calls=list(calls))

    @classmethod
    def fail(cls, status: int = 500, message: str = "the model is overloaded") -> Reply:
        return cls(status=status, error=message)


class FakeOpenAIServer:
    """Threaded HTTP server on 127.0.0.1 (random free port); use as a context manager."""

    def __init__(
        self,
        replies: Iterable[Reply | Responder] | Responder | None = None,
        *,
        api_key: str | None = None,
        model: str = "fake-gpt",
    ) -> None:
        self.api_key = api_key
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        """Request headers of every completion request, names in lower case."""
        self._fallback: Responder | None = None
        self._queue: deque[Reply | Responder] = deque()
        if callable(replies):
            self._fallback = replies
        elif replies is not None:
            self._queue.extend(replies)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting ------------------------------------------------------------------------------------
    def script(self, *replies: Reply | Responder) -> None:
        """Queue more replies (played in order, one per completion request)."""
        with self._lock:
            self._queue.extend(replies)

    def respond_with(self, responder: Responder | None) -> None:
        """Answer with ``responder`` once the scripted queue is empty (None: a 500 'script exhausted')."""
        self._fallback = responder

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            item = self._queue.popleft() if self._queue else self._fallback
        if item is None:
            return Reply.fail(500, "fake OpenAI server: no scripted reply left")
        return item(request) if callable(item) else item

    # --- lifecycle ------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- protocol -------------------------------------------------------------------------------------
    def completion(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in reply.tool_calls
            ]
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in request.get("messages", []))
        completion_tokens = len((reply.content or "").split()) + 10 * len(reply.tool_calls)
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", self.model),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def chunks(self, request: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        """The streamed form of a completion: role, content pieces, tool-call deltas, finish, usage."""
        full = self.completion(request, reply)
        base = {k: full[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        out = [chunk({"role": "assistant", "content": ""})]
        content = reply.content or ""
        for start in range(0, len(content), 8):
            out.append(chunk({"content": content[start : start + 8]}))
        for index, call in enumerate(full["choices"][0]["message"].get("tool_calls", [])):
            arguments = call["function"]["arguments"]
            out.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for start in range(0, len(arguments), 16):
                piece = arguments[start : start + 16]
                out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        out.append(chunk({}, full["choices"][0]["finish_reason"]))
        if (request.get("stream_options") or {}).get("include_usage"):
            out.append({**base, "choices": [], "usage": full["usage"]})
        return out


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def _authorised(self) -> bool:
        if self.fake.api_key is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.fake.api_key}":
            return True
        self._error(401, "Incorrect API key provided.", "invalid_api_key")
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}],
                },
            )
        else:
            self._error(404, f"unknown path {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"unknown path {self.path}")
            return
        try:
            request = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "the body is not JSON")
            return
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("messages"), list)
            or not request["messages"]
        ):
            self._error(400, "'messages' must be a non-empty list")
            return
        with self.fake._lock:
            self.fake.requests.append(request)
            self.fake.headers.append({k.lower(): v for k, v in self.headers.items()})
        reply = self.fake._next_reply(request)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            kind = "rate_limit_error" if reply.status == 429 else "server_error"
            self._error(reply.status, reply.error or HTTPStatus(reply.status).phrase, kind)
            return
        if not request.get("stream"):
            self._send_json(200, self.fake.completion(request, reply))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in self.fake.chunks(request, reply):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True
