"""Assembling the bolt ``App``: the Web API client (with 429 retries), the engine, the listeners."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from agent.engine import ConversationEngine
from chatir.errors import ChatIRError
from chatir.settings import Settings
from frontends.slack.access import MembershipCache
from frontends.slack.assistant import SlackAssistant
from frontends.slack.assistant_threads import AssistantThreads
from frontends.slack.conversation import SlackConversations
from frontends.slack.http_guard import EventLog, open_event_log
from frontends.slack.images import SlackImagePublisher
from frontends.slack.indexing import SlackIndexer
from frontends.slack.listeners import register_all
from frontends.slack.listeners.deps import SlackDeps
from tools.client import RetrieverClient

logger = logging.getLogger(__name__)


def web_client(settings: Settings) -> WebClient:
    """A Web API client that waits out 429s (``Retry-After``) and retries dropped connections."""
    if settings.slack_bot_token is None:
        raise ChatIRError(
            "SLACK_BOT_TOKEN is not set: create the app from deploy/slack/manifest.yaml, install it "
            "to your workspace and export its Bot User OAuth Token (xoxb-...)."
        )
    client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client


def create_slack_app(
    settings: Settings,
    *,
    engine: ConversationEngine | None = None,
    retriever: RetrieverClient | None = None,
    client: WebClient | None = None,
    membership_ttl_s: float = 60.0,
) -> App:
    """The bolt app. ``engine`` defaults to the product engine built from ``settings``."""
    client = client or web_client(settings)
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        raise ChatIRError("Set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode).")
    retriever = retriever or RetrieverClient.from_settings(settings)
    if engine is None:
        from agent.factory import build_engine

        engine = build_engine(settings)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        client=client, signing_secret=secret, request_verification_enabled=secret is not None, name="chatir"
    )
    publisher = SlackImagePublisher(client, retriever, settings.home / "slack" / "thumbnails.json")
    conversations = SlackConversations(
        engine, publisher, MembershipCache(client, membership_ttl_s), top_k=settings.top_k
    )
    conversations.readiness = retriever.ready  # the first reply carries the service's notice (the starter's)
    indexer = SlackIndexer(client, retriever, client.token or "")
    assistant = SlackAssistant(
        conversations,
        AssistantThreads(settings.home / "slack" / "assistant.sqlite"),
        bank=settings.question_bank,
    )
    register_all(app, SlackDeps(conversations=conversations, indexer=indexer, assistant=assistant))
    return app


def http_app(app: App, *, signing_secret: str | None, seen_events: Path | EventLog | None = None):
    """HTTP mode's ASGI app: Slack posts events, actions and commands to ``/slack/events``.

    :mod:`frontends.slack.http_guard` checks each request first (signature and timestamp: 401; unreadable body:
    400; an ``event_id`` already processed: 200 without processing it again), then bolt handles it.
    ``signing_secret``: the app's (None only for a test app without verification); ``seen_events``: the
    SQLite file of processed event ids, or an open event log (:func:`~frontends.slack.http_guard.open_event_log`:
    PostgreSQL, shared by replicas); default: a temporary SQLite file for this process."""
    import tempfile

    from fastapi.responses import JSONResponse
    from slack_bolt.adapter.fastapi import SlackRequestHandler

    from frontends.slack.http_guard import SeenEvents, check_request, event_id_of

    handler = SlackRequestHandler(app)
    api = FastAPI(title="chatir-slack")
    if seen_events is None:
        seen_events = Path(tempfile.mkdtemp(prefix="chatir-slack-")) / "events.sqlite"
    seen = SeenEvents(seen_events) if isinstance(seen_events, Path) else seen_events

    @api.post("/slack/events")
    async def events(request: Request):
        body = await request.body()  # starlette keeps it: bolt reads the same bytes
        headers = {k.lower(): v for k, v in request.headers.items()}
        refused = check_request(body, headers, signing_secret)
        if refused is not None:
            return JSONResponse({"error": refused[1]}, status_code=refused[0])
        event_id = event_id_of(body, headers.get("content-type", ""))
        try:
            first = event_id is None or seen.first_time(event_id)
        except Exception as error:  # noqa: BLE001 - the shared event log is down: Slack retries a 503 later
            logging.getLogger(__name__).warning("event log unavailable: %s: %s", type(error).__name__, error)
            return JSONResponse({"error": "the bot's database is unavailable; retry later"}, status_code=503)
        if not first:
            return JSONResponse({"ok": True, "duplicate": event_id})
        try:
            return await handler.handle(request)
        except Exception as error:  # noqa: BLE001 - a body bolt cannot read is the sender's error
            logging.getLogger(__name__).warning(
                "unreadable Slack request: %s: %s", type(error).__name__, error
            )
            return JSONResponse({"error": "malformed Slack request"}, status_code=400)

    @api.get("/healthz")
    async def healthz():
        return {"ok": True}

    return api


def serve_http(app: App, settings: Settings, host: str, port: int) -> None:
    import uvicorn

    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    uvicorn.run(
        http_app(app, signing_secret=secret, seen_events=open_event_log(settings)),
        host=host,
        port=port,
    )


def serve_socket_mode(app: App, settings: Settings) -> None:
    """Socket Mode: no public URL needed; the app opens a WebSocket to Slack."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    if settings.slack_app_token is None:
        raise ChatIRError(
            "Socket Mode needs SLACK_APP_TOKEN (an app-level token, xapp-..., with connections:write)."
        )
    SocketModeHandler(app, settings.slack_app_token.get_secret_value()).start()
