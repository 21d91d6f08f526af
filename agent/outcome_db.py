"""Where the outcome log (:mod:`agent.outcomes`) keeps its rows: a SQLite file or a PostgreSQL database.

The log's SQL is written once, with ``?`` parameters and ``{table}`` for its table; each database here is the thin
layer under it: the schema, the placeholder style, the table's name and how a write transaction is taken.

- :class:`SqliteOutcomeDatabase`: ``CHATIR_HOME/outcomes.sqlite`` (the default; one host), table ``searches``.
  A write is ``BEGIN IMMEDIATE``: one writer at a time across threads and processes.
- :class:`PostgresOutcomeDatabase`: the database ``CHATIR_STATE_URL`` names, shared by several bot / web replicas,
  table ``chatir_outcomes``. A write locks its conversation (a transaction-scoped advisory lock on the hashed
  id), so two replicas recording turns of one conversation take turns, as two SQLite writers do; other
  conversations are not held up. Connections come from :class:`agent.state_postgres.PostgresConnections`
  (checked pool, one-sentence outage error without the password).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

SQLITE_TABLE = "searches"
POSTGRES_TABLE = "chatir_outcomes"
_COLUMNS = """
    conversation TEXT NOT NULL,
    frontend TEXT NOT NULL,
    questioner TEXT NOT NULL,
    started_at {real} NOT NULL,
    last_at {real} NOT NULL,
    last_action TEXT NOT NULL,
    rounds INTEGER NOT NULL DEFAULT 0,
    rejections INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    ended_at {real},
    found_round INTEGER,
    found_rank INTEGER,
    helpful INTEGER
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS {table}_by_conversation ON {table} (conversation, id);
CREATE INDEX IF NOT EXISTS {table}_by_start ON {table} (started_at);
"""
_SQLITE_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} (\n    id INTEGER PRIMARY KEY AUTOINCREMENT,"
    + _COLUMNS.format(real="REAL")
    + ");\n"
    # the index names the first SQLite logs were created with
    + _INDEXES.replace("{table}_by", "searches_by").format(table=SQLITE_TABLE)
)
_POSTGRES_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {POSTGRES_TABLE} (\n    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    + _COLUMNS.format(real="DOUBLE PRECISION")  # REAL is 4 bytes in PostgreSQL: seconds would be lost
    + ");\n"
    + _INDEXES.format(table=POSTGRES_TABLE)
)
_CONVERSATION_LOCKS = 0x4F555443  # advisory lock class ("OUTC") of the per-conversation write locks


class Rows(Protocol):
    """What an ``execute`` returns (a DB-API cursor)."""

    rowcount: int

    def fetchone(self) -> Sequence[Any] | None: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...


class OutcomeSession(Protocol):
    """One transaction (or one read) on the log's table."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run ``sql`` (``?`` parameters, ``{table}`` for the log's table, ``{for_update}`` after a SELECT whose
        rows the transaction then changes)."""
        ...

    def lock_conversation(self, key: str) -> None:
        """Hold ``key``'s writes from other processes until the transaction ends."""
        ...


class OutcomeDatabase(Protocol):
    where: str
    """For messages: a file path, or ``user@host:port/db`` (never a password)."""

    def transaction(self) -> AbstractContextManager[OutcomeSession]:
        """A write transaction (committed at the end, rolled back on an error)."""
        ...

    def reading(self) -> AbstractContextManager[OutcomeSession]:
        """A read outside any transaction."""
        ...

    def close(self) -> None: ...


class _Session:
    def __init__(self, db: Any, table: str, placeholder: str, lock: str | None) -> None:
        self.db, self.table, self.placeholder, self.lock = db, table, placeholder, lock

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        # {for_update}: PostgreSQL locks the rows a write read, so a concurrent close_idle() (which locks no
        # conversation) waits for the turn or is seen by it; SQLite has one writer at a time anyway
        sql = sql.replace("{table}", self.table).replace("{for_update}", " FOR UPDATE" if self.lock else "")
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)  # the log's SQL holds no other question mark
        return self.db.execute(sql, tuple(params))

    def lock_conversation(self, key: str) -> None:
        if self.lock is not None:
            self.execute(self.lock, (_CONVERSATION_LOCKS, int(key[:8], 16) - 2**31))


class SqliteOutcomeDatabase:
    """The outcome log's SQLite file: thread-safe, and several processes on one host may share it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0, isolation_level=None)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            # a power cut may lose the last turns' rows, never corrupt the file: fine for statistics
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SQLITE_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[OutcomeSession]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on the autocommit connection."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _Session(self._db, SQLITE_TABLE, "?", None)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[OutcomeSession]:
        with self._lock:
            yield _Session(self._db, SQLITE_TABLE, "?", None)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresOutcomeDatabase:
    """The outcome log's table in a PostgreSQL database, shared by every replica that names it."""

    def __init__(self, url: str, *, max_connections: int = 4, connect_timeout_s: float = 10.0) -> None:
        from agent.state_postgres import PostgresConnections

        self._db = PostgresConnections(
            url,
            purpose="the outcome-log database",
            name="chatir-outcomes",
            max_connections=max_connections,
            connect_timeout_s=connect_timeout_s,
        )
        self.where = self._db.where
        self._db.create_schema(_POSTGRES_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[OutcomeSession]:
        with self._db.transaction() as connection:
            yield _Session(
                connection, POSTGRES_TABLE, "%s", "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)"
            )

    @contextmanager
    def reading(self) -> Iterator[OutcomeSession]:
        with self._db.connection() as connection:
            yield _Session(connection, POSTGRES_TABLE, "%s", None)

    def close(self) -> None:
        self._db.close()
