"""Durable per-conversation state: one SQLite row of pydantic JSON per conversation id.

The whole state of a search (scope, dialog, pending question, shown and excluded images) fits in one small
JSON document, so a table ``conversations(id, state, version, updated_at)`` is all the durability needed: a
new process (or a new :class:`ConversationStore` on the same file) continues every conversation. Writes are
compare-and-swap on ``version`` so two processes cannot silently overwrite each other's turn.

The LLM questioner needs no separate message history: it re-reads the full dialog every turn (as ChatIR's
questioner does), and the dialog lives here.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field

from chatir.dialog import Dialog
from chatir.errors import ChatIRError
from retriever_service.schemas import Hit
from tools.scope import SearchScope

Status = Literal["awaiting_description", "asking", "showing", "found", "gave_up"]
"""Where a conversation stands.

- ``awaiting_description``: nothing to search yet (just restarted); the next message is a description.
- ``asking``: a question is pending; the next message is its answer.
- ``showing``: no question pending (the questioner is confident or out of questions); the user picks an
  image, rejects them all, or adds detail in free text.
- ``found``: the user chose an image (``chosen``).
- ``gave_up``: ``max_rounds`` questions were asked without a choice; the user may still pick or add detail.
"""

MAX_ARCHIVED = 20


class ConcurrentUpdateError(ChatIRError):
    """Another process changed the conversation while this turn was computed."""


class ConversationState(BaseModel):
    """Everything the engine remembers about one conversation."""

    conversation_id: str = Field(..., min_length=1, max_length=300)
    scope: SearchScope = Field(
        default_factory=SearchScope, description="Set by the front-end at start; never changed by user text."
    )
    status: Status = "awaiting_description"
    dialog: Dialog | None = None
    pending_question: str | None = None
    asked: list[str] = Field(
        default_factory=list, description="Every question asked in this search, in order."
    )
    shown: list[Hit] = Field(default_factory=list, description="The hits shown after the last turn.")
    seen: list[Hit] = Field(
        default_factory=list, description="Every hit shown in this search ('This one' targets)."
    )
    excluded_ids: list[str] = Field(default_factory=list, description="Rejected with 'None of these'.")
    chosen: Hit | None = None
    archived: list[Dialog] = Field(
        default_factory=list, description="Dialogs of searches ended by a restart."
    )
    version: int = 0
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def rounds(self) -> int:
        return len(self.dialog.rounds) if self.dialog else 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL
)
"""


class ConversationStore:
    """SQLite-backed store of :class:`ConversationState`, safe across threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._connection = sqlite3.connect(
            str(path), check_same_thread=False, timeout=30.0, isolation_level=None
        )
        with self._lock:
            if str(path) != ":memory:":
                self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def get(self, conversation_id: str) -> ConversationState | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT state FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
        return ConversationState.model_validate_json(row[0]) if row else None

    def save(self, state: ConversationState) -> ConversationState:
        """Write ``state`` if nobody else wrote since it was read; returns the stored copy (version + 1)."""
        new = state.model_copy(update={"version": state.version + 1, "updated_at": datetime.now(UTC)})
        with self._transaction() as db:
            row = db.execute(
                "SELECT version FROM conversations WHERE id = ?", (state.conversation_id,)
            ).fetchone()
            current = row[0] if row else 0
            if current != state.version:
                raise ConcurrentUpdateError(
                    f"conversation {state.conversation_id!r} was changed by another turn at the same time; "
                    "please send your message again"
                )
            db.execute(
                "INSERT INTO conversations (id, state, version, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET state = excluded.state, version = excluded.version, "
                "updated_at = excluded.updated_at",
                (new.conversation_id, new.model_dump_json(), new.version, new.updated_at.isoformat()),
            )
        return new

    def delete(self, conversation_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

    def ids(self) -> list[str]:
        with self._lock:
            return [
                r[0] for r in self._connection.execute("SELECT id FROM conversations ORDER BY updated_at")
            ]

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
