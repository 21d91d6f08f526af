"""Conversation state in PostgreSQL, for several bot / web replicas sharing conversations.

Same contract as the SQLite :class:`agent.state.ConversationStore`: one row of pydantic JSON per conversation,
writes are compare-and-swap on ``version`` (a single ``UPDATE ... WHERE version = %s`` or an ``INSERT ... ON
CONFLICT DO NOTHING`` for a new conversation: atomic in PostgreSQL, no lock held while a turn is computed), and a
row that no longer parses is moved to a quarantine table and reads as a new conversation.

Selected with ``CHATIR_STATE_URL=postgresql://user:password@host:5432/db`` (psycopg 3, ``[agent]`` extra).
Connections come from a psycopg pool that checks a connection before lending it (and, while the pool is still
backing off after an outage, from one direct connection), so a restarted database costs the turns made while
it was down, and they fail with one sentence (:class:`StateStoreUnavailableError`), never half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from agent.state import CONCURRENT_UPDATE_MESSAGE, ConcurrentUpdateError, ConversationState
from chatir.errors import ChatIRError

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

CONVERSATIONS = "chatir_conversations"
QUARANTINE = "chatir_quarantine"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {CONVERSATIONS} (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS {CONVERSATIONS}_updated_at ON {CONVERSATIONS} (updated_at);
CREATE TABLE IF NOT EXISTS {QUARANTINE} (
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
"""
_SCHEMA_LOCK = 0x43484154  # advisory lock id ("CHAT"): replicas starting together create the tables once


class StateStoreUnavailableError(ChatIRError):
    """The conversation-state database cannot be reached (or refused the login)."""


def describe_url(url: str) -> str:
    """``user@host:port/db`` of a libpq URL, without its password (for messages and logs)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - any parse failure: say nothing more than the scheme
        return "postgresql://…"
    host = parts.get("host") or "localhost"
    return f"{parts.get('user') or ''}@{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


class PostgresConnections:
    """A psycopg pool to one database, checked before each loan, with the one-sentence outage error.

    Shared by the conversation store and the outcome log (:mod:`agent.outcome_db`). ``purpose`` names the
    database in messages (``the conversation-state database``); the URL's password never appears in them.
    """

    def __init__(
        self,
        url: str,
        *,
        purpose: str = "the conversation-state database",
        name: str = "chatir-state",
        max_connections: int = 8,
        connect_timeout_s: float = 10.0,
    ) -> None:
        from psycopg_pool import ConnectionPool

        self.url = url
        self.purpose = purpose
        self.where = describe_url(url)
        self._connect_timeout = max(1, round(connect_timeout_s))
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "connect_timeout": self._connect_timeout},
            check=ConnectionPool.check_connection,
            timeout=connect_timeout_s,
            open=False,
            name=name,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except Exception as error:  # PoolTimeout, OperationalError: one message for people
            self._pool.close()
            raise self.unavailable(error) from error

    def unavailable(self, error: BaseException) -> StateStoreUnavailableError:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return StateStoreUnavailableError(
            f"{self.purpose} {self.where} cannot be reached ({detail}); check CHATIR_STATE_URL "
            "and that PostgreSQL is running. Nothing was recorded: please try again."
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg
        from psycopg_pool import PoolTimeout

        pooled = True
        try:
            connection = self._pool.getconn()
        except PoolTimeout:
            # After an outage the pool retries with a growing back-off, so it may still be waiting when the
            # database is back: try the database directly once rather than fail a turn that could succeed.
            pooled = False
            try:
                connection = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
            except psycopg.OperationalError as error:
                raise self.unavailable(error) from error
        try:
            yield connection
        except psycopg.OperationalError as error:
            raise self.unavailable(error) from error
        finally:
            if pooled:
                self._pool.putconn(connection)
            else:
                connection.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self.connection() as connection, connection.transaction():
            yield connection

    def create_schema(self, schema: str) -> None:
        """Run ``schema`` (``CREATE ... IF NOT EXISTS``) once, under an advisory lock: replicas start together."""
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute(schema)

    def close(self) -> None:
        self._pool.close()


class PostgresConversationStore:
    """PostgreSQL-backed store of :class:`ConversationState`, safe across threads, processes and machines."""

    def __init__(self, url: str, *, max_connections: int = 8, connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self._recovered: set[str] = set()
        self._db = PostgresConnections(
            url, max_connections=max_connections, connect_timeout_s=connect_timeout_s
        )
        self._connection = self._db.connection
        self._transaction = self._db.transaction
        self._db.create_schema(_SCHEMA)

    def get(self, conversation_id: str) -> ConversationState | None:
        """The stored state, or None; a damaged row is set aside (see :meth:`take_recovered`)."""
        with self._connection() as db:
            row = db.execute(
                f"SELECT state FROM {CONVERSATIONS} WHERE id = %s", (conversation_id,)
            ).fetchone()
        if not row:
            return None
        try:
            return ConversationState.model_validate_json(row[0])
        except ValueError as error:  # pydantic's ValidationError: truncated or edited JSON
            self._quarantine(conversation_id, row[0], str(error)[:2000])
            return None

    def _quarantine(self, conversation_id: str, state: str, reason: str) -> None:
        with self._transaction() as db:
            # only the damaged text itself: a replica may have replaced it with a good state meanwhile
            moved = db.execute(
                f"DELETE FROM {CONVERSATIONS} WHERE id = %s AND state = %s", (conversation_id, state)
            ).rowcount
            if moved:
                db.execute(
                    f"INSERT INTO {QUARANTINE} (id, state, reason, at) VALUES (%s, %s, %s, %s)",
                    (conversation_id, state, reason, datetime.now(UTC)),
                )
        logger.warning(
            "conversation %r had a damaged state; set aside in the %s table", conversation_id, QUARANTINE
        )
        self._recovered.add(conversation_id)

    def take_recovered(self, conversation_id: str) -> bool:
        """True (once) when this conversation's damaged state was set aside by this process since last asked."""
        if conversation_id in self._recovered:
            self._recovered.discard(conversation_id)
            return True
        return False

    def quarantined(self) -> list[tuple[str, str]]:
        """(conversation id, reason) of every state set aside."""
        with self._connection() as db:
            return [(r[0], r[1]) for r in db.execute(f"SELECT id, reason FROM {QUARANTINE} ORDER BY at")]

    def save(self, state: ConversationState) -> ConversationState:
        """Write ``state`` if nobody else wrote since it was read; returns the stored copy (version + 1)."""
        new = state.model_copy(update={"version": state.version + 1, "updated_at": datetime.now(UTC)})
        values = (new.model_dump_json(), new.version, new.updated_at)
        with self._connection() as db:
            if state.version == 0:
                written = db.execute(
                    f"INSERT INTO {CONVERSATIONS} (state, version, updated_at, id) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (*values, new.conversation_id),
                ).rowcount
            else:
                written = db.execute(
                    f"UPDATE {CONVERSATIONS} SET state = %s, version = %s, updated_at = %s "
                    "WHERE id = %s AND version = %s",
                    (*values, new.conversation_id, state.version),
                ).rowcount
        if written != 1:
            raise ConcurrentUpdateError(CONCURRENT_UPDATE_MESSAGE)
        return new

    def delete(self, conversation_id: str) -> bool:
        with self._connection() as db:
            return db.execute(f"DELETE FROM {CONVERSATIONS} WHERE id = %s", (conversation_id,)).rowcount > 0

    def ids(self) -> list[str]:
        with self._connection() as db:
            return [r[0] for r in db.execute(f"SELECT id FROM {CONVERSATIONS} ORDER BY updated_at, id")]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
