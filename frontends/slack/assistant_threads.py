"""What the bot remembers about each assistant-panel thread, durably (a restart loses nothing).

Per thread (the DM channel and the thread's ``ts``): the person it belongs to, the thread context Slack last
sent (the channel being viewed), the scope mode (``channel`` or ``all``) and whether the title was set.
It is also bolt's :class:`AssistantThreadContextStore`, so ``get_thread_context()`` reads it instead of bolt's
default store (which keeps the context in a message's metadata and reads it back with
``conversations.replies`` on every turn).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.store import AssistantThreadContextStore

from frontends.slack.access import ScopeMode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assistant_threads (
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    context TEXT NOT NULL DEFAULT '{}',
    mode TEXT NOT NULL DEFAULT 'channel',
    titled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, thread_ts)
);
"""


@dataclass(frozen=True)
class AssistantThread:
    channel: str
    thread_ts: str
    user_id: str
    context: dict[str, str]
    mode: ScopeMode
    titled: bool

    @property
    def viewed_channel(self) -> str | None:
        """The channel the person was viewing when Slack last told us (thread context), if any."""
        return self.context.get("channel_id") or None


class AssistantThreads(AssistantThreadContextStore):
    """SQLite file of assistant threads; thread-safe."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0, isolation_level=None)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def started(self, *, channel: str, thread_ts: str, user_id: str, context: dict[str, str] | None) -> None:
        """``assistant_thread_started``: a new thread. A context saved already is newer (a context change
        processed before this event) and is kept, as are the mode and the title flag."""
        with self._lock:
            self._db.execute(
                "INSERT INTO assistant_threads (channel, thread_ts, user_id, context) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(channel, thread_ts) DO UPDATE SET user_id = excluded.user_id, "
                "context = CASE WHEN assistant_threads.context = '{}' THEN excluded.context "
                "ELSE assistant_threads.context END",
                (channel, thread_ts, user_id, json.dumps(_clean(context))),
            )

    def get(self, channel: str, thread_ts: str | None) -> AssistantThread | None:
        if not thread_ts:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT user_id, context, mode, titled FROM assistant_threads WHERE channel = ? AND thread_ts = ?",
                (channel, thread_ts),
            ).fetchone()
        if row is None:
            return None
        mode: ScopeMode = "all" if row[2] == "all" else "channel"
        return AssistantThread(channel, thread_ts, row[0], json.loads(row[1]), mode, bool(row[3]))

    def set_mode(self, channel: str, thread_ts: str, mode: ScopeMode) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE assistant_threads SET mode = ? WHERE channel = ? AND thread_ts = ?",
                (mode, channel, thread_ts),
            )

    def mark_titled(self, channel: str, thread_ts: str) -> bool:
        """True the first time (the caller sets the title then), False afterwards."""
        with self._lock:
            changed = self._db.execute(
                "UPDATE assistant_threads SET titled = 1 WHERE channel = ? AND thread_ts = ? AND titled = 0",
                (channel, thread_ts),
            ).rowcount
        return changed > 0

    # --- bolt's AssistantThreadContextStore ----------------------------------------------------------
    def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        """``assistant_thread_context_changed``: the person now views another channel."""
        with self._lock:
            self._db.execute(
                "INSERT INTO assistant_threads (channel, thread_ts, context) VALUES (?, ?, ?) "
                "ON CONFLICT(channel, thread_ts) DO UPDATE SET context = excluded.context",
                (channel_id, thread_ts, json.dumps(_clean(context))),
            )

    def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        thread = self.get(channel_id, thread_ts)
        if thread is None or not thread.viewed_channel:
            return None
        return AssistantThreadContext(thread.context)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _clean(context: dict[str, str] | None) -> dict[str, str]:
    """Only the ids Slack's thread context carries (nothing else from the payload is kept)."""
    keys = ("channel_id", "team_id", "enterprise_id")
    return {k: str(v) for k, v in (context or {}).items() if k in keys and v}
