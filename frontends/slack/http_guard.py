"""HTTP mode's front door: reject what bolt would crash on, and never process one Slack event twice.

Slack signs every request (``X-Slack-Signature`` over ``v0:{timestamp}:{body}``) and retries events it thinks
were not acknowledged (``X-Slack-Retry-Num``); an attacker can also replay a signed body within the 5-minute
window. Before a request reaches bolt this guard

- answers 401 to a missing, non-numeric or stale timestamp and to a bad signature (bolt's own check raises on a
  non-numeric timestamp: a 500 for an unsigned request);
- answers 400 to a signed body that is not UTF-8 or not a JSON object / form payload bolt can read;
- records every ``event_id`` durably (SQLite under ``CHATIR_HOME/slack``; in PostgreSQL when
  ``CHATIR_STATE_URL`` names one, so that N replicas behind a load balancer share it: Slack's retry of an event
  may reach another replica) and acknowledges a repeat with 200 without processing it, so one answer never fills
  two rounds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chatir.settings import Settings

MAX_AGE_S = 5 * 60
KEEP_EVENTS_S = 24 * 3600


class SeenEvents:
    """A durable set of Slack event ids (kept a day: Slack retries within minutes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, at REAL NOT NULL)")
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """Record ``event_id``; True when it had not been seen before."""
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM seen WHERE at < ?", (now - KEEP_EVENTS_S,))
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen (event_id, at) VALUES (?, ?)", (event_id, now)
            )
            return cursor.rowcount == 1

    def close(self) -> None:
        self._db.close()


class EventLog(Protocol):
    def first_time(self, event_id: str) -> bool: ...
    def close(self) -> None: ...


class PostgresSeenEvents:
    """The same set in PostgreSQL (table ``chatir_slack_events``), shared by every HTTP-mode replica."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._db: Any = None
        with self._lock:
            db = self._connection()
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (0x534C4B45,))  # replicas starting together
                db.execute(
                    "CREATE TABLE IF NOT EXISTS chatir_slack_events "
                    "(event_id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL)"
                )

    def _connection(self) -> Any:
        import psycopg

        if self._db is None or self._db.closed or self._db.broken:
            self._db = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return self._db

    def first_time(self, event_id: str) -> bool:
        """Record ``event_id``; True when no replica had seen it before (a dropped connection is opened again)."""
        import psycopg

        now = time.time()
        with self._lock:
            for attempt in (1, 2):
                try:
                    db = self._connection()
                    db.execute("DELETE FROM chatir_slack_events WHERE at < %s", (now - KEEP_EVENTS_S,))
                    inserted = db.execute(
                        "INSERT INTO chatir_slack_events (event_id, at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (event_id, now),
                    ).rowcount
                    return bool(inserted == 1)
                except psycopg.OperationalError:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def open_event_log(settings: Settings) -> EventLog:
    """Where processed event ids are kept: PostgreSQL when ``CHATIR_STATE_URL`` names it, else SQLite."""
    url = settings.state_url.get_secret_value() if settings.state_url else ""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresSeenEvents(url)
    return SeenEvents(settings.home / "slack" / "events.sqlite")


def signature_of(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's ``v0=`` signature of raw body bytes (any bytes: slack_sdk's verifier needs UTF-8 text)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def check_request(
    body: bytes, headers: dict[str, str], secret: str | None, *, now: float | None = None
) -> tuple[int, str] | None:
    """``(status, reason)`` when the request must be refused before bolt sees it, else None."""
    if secret is not None:
        timestamp = headers.get("x-slack-request-timestamp", "")
        given = headers.get("x-slack-signature", "")
        if not timestamp.isdigit():
            return 401, "missing or malformed X-Slack-Request-Timestamp"
        if abs((now or time.time()) - int(timestamp)) > MAX_AGE_S:
            return 401, "stale request (timestamp older than 5 minutes)"
        if not hmac.compare_digest(signature_of(secret, timestamp, body), given):
            return 401, "invalid request signature"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return 400, "the body is not UTF-8"
    if headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return 400, "the body is not JSON"
        if not isinstance(parsed, dict):
            return 400, "the body is not a JSON object"
    return None


def event_id_of(body: bytes, content_type: str) -> str | None:
    """The ``event_id`` of an Events API callback (None for actions, commands and the URL check)."""
    if not content_type.startswith("application/json"):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    value = parsed.get("event_id") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) and value else None
