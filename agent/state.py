"""Durable per-conversation state: one SQLite row of pydantic JSON per conversation id.

The whole state of a search (scope, dialog, pending question, shown and excluded images) fits in one small
JSON document, so a table ``conversations(id, state, version, updated_at)`` is all the durability needed: a
new process (or a new :class:`ConversationStore` on the same file) continues every conversation. Writes are
compare-and-swap on ``version`` so two processes cannot silently overwrite each other's turn.

The LLM questioner needs no separate message history: it re-reads the full dialog every turn (as ChatIR's
questioner does), and the dialog lives here.

Several hosts share conversations through PostgreSQL instead (:mod:`agent.state_postgres`, same
:class:`StateStore` contract; ``CHATIR_STATE_URL`` picks it, :func:`agent.state_backends.open_state_store`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, Self

from pydantic import BaseModel, Field

from chatir.dialog import Dialog
from chatir.errors import ChatIRError
from chatir.schemas import Hit
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
);
CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
RECOVERED_NOTE = (
    "I could not read our earlier conversation (its saved state was damaged and has been set aside), "
    "so this is a new search."
)
logger = logging.getLogger(__name__)


class StateStore(Protocol):
    """What the engine needs of a conversation-state backend (SQLite here, PostgreSQL in
    :mod:`agent.state_postgres`; :func:`agent.state_backends.open_state_store` picks one from settings).

    ``save`` is compare-and-swap: it writes only when the stored version still equals ``state.version``
    (0: not stored yet) and raises :class:`ConcurrentUpdateError` otherwise, so no turn is silently lost."""

    def get(self, conversation_id: str) -> ConversationState | None: ...
    def take_recovered(self, conversation_id: str) -> bool: ...
    def quarantined(self) -> list[tuple[str, str]]: ...
    def save(self, state: ConversationState) -> ConversationState: ...
    def delete(self, conversation_id: str) -> bool: ...
    def ids(self) -> list[str]: ...
    def close(self) -> None: ...


CONCURRENT_UPDATE_MESSAGE = (
    "this conversation was changed by another turn at the same time; please send your message again"
)


class ConversationStore:
    """SQLite-backed store of :class:`ConversationState`, safe across threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.quarantined_file: Path | None = None
        """Where a damaged database file was moved (kept for inspection) when this store opened it."""
        self._recovered: set[str] = set()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._connection = self._open(str(path))
        except sqlite3.DatabaseError as error:  # not a database, truncated, malformed
            self.quarantined_file = self._quarantine_file(error)
            self._connection = self._open(str(path))

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        connection = sqlite3.connect(path, check_same_thread=False, timeout=30.0, isolation_level=None)
        try:
            if path != ":memory:":
                connection.execute("PRAGMA journal_mode=WAL")
                if connection.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise sqlite3.DatabaseError("quick_check failed")
            connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def _quarantine_file(self, error: Exception) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                os.replace(source, Path(str(target) + suffix))
        logger.warning(
            "conversation state %s is damaged (%s); moved it to %s and started a new one",
            self.path,
            error,
            target,
        )
        return target

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
        """The stored state, or None. A row that no longer parses is moved to the ``quarantine`` table (kept
        for inspection) and reads as None, so the conversation can start again; :meth:`take_recovered` says so."""
        with self._lock:
            row = self._connection.execute(
                "SELECT state FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
        if not row:
            return None
        try:
            return ConversationState.model_validate_json(row[0])
        except ValueError as error:  # pydantic's ValidationError: truncated or edited JSON
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO quarantine (id, state, reason, at) VALUES (?, ?, ?, ?)",
                    (conversation_id, row[0], str(error)[:2000], datetime.now(UTC).isoformat()),
                )
                db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            logger.warning(
                "conversation %r had a damaged state; set aside in the quarantine table", conversation_id
            )
            self._recovered.add(conversation_id)
            return None

    def take_recovered(self, conversation_id: str) -> bool:
        """True (once) when this conversation's damaged state was set aside since it was last asked."""
        with self._lock:
            if conversation_id in self._recovered:
                self._recovered.discard(conversation_id)
                return True
            return False

    def quarantined(self) -> list[tuple[str, str]]:
        """(conversation id, reason) of every state set aside."""
        with self._lock:
            return [
                (r[0], r[1])
                for r in self._connection.execute("SELECT id, reason FROM quarantine ORDER BY at")
            ]

    def save(self, state: ConversationState) -> ConversationState:
        """Write ``state`` if nobody else wrote since it was read; returns the stored copy (version + 1)."""
        new = state.model_copy(update={"version": state.version + 1, "updated_at": datetime.now(UTC)})
        with self._transaction() as db:
            row = db.execute(
                "SELECT version FROM conversations WHERE id = ?", (state.conversation_id,)
            ).fetchone()
            current = row[0] if row else 0
            if current != state.version:
                raise ConcurrentUpdateError(CONCURRENT_UPDATE_MESSAGE)
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
