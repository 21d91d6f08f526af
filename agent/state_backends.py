"""Pick the conversation-state backend from settings: SQLite by default, PostgreSQL for shared state.

``CHATIR_STATE_URL`` unset: the SQLite file ``CHATIR_HOME/conversations.sqlite`` (one process or host).
``postgresql://…`` (or ``postgres://…``): :class:`agent.state_postgres.PostgresConversationStore`, so that
several bot or web replicas continue each other's conversations. ``sqlite:///path``: another SQLite file.
The outcome log (:mod:`agent.outcomes`) follows: in that PostgreSQL database too, else its own SQLite file.
"""

from __future__ import annotations

from pathlib import Path

from agent.outcome_db import OutcomeDatabase, PostgresOutcomeDatabase, SqliteOutcomeDatabase
from agent.state import ConversationStore, StateStore
from chatir.errors import ChatIRError
from chatir.settings import Settings

SCHEMES = ("postgresql://", "postgres://", "sqlite:///")


def open_state_store(settings: Settings) -> StateStore:
    """The store ``settings`` name (opened: tables created, connection checked)."""
    if settings.state_url is None:
        return ConversationStore(settings.state_db)
    url = settings.state_url.get_secret_value()
    if url.startswith("sqlite:///"):
        return ConversationStore(Path(url.removeprefix("sqlite:///")).expanduser())
    _check_postgres(url)
    from agent.state_postgres import PostgresConversationStore

    return PostgresConversationStore(url)


def postgres_url(settings: Settings) -> str | None:
    """The PostgreSQL URL ``CHATIR_STATE_URL`` names (checked), or None when the state is in SQLite."""
    if settings.state_url is None:
        return None
    url = settings.state_url.get_secret_value()
    if url.startswith("sqlite:///"):
        return None
    _check_postgres(url)
    return url


def open_outcome_database(settings: Settings) -> OutcomeDatabase:
    """Where the outcome log lives: PostgreSQL's ``chatir_outcomes`` table when the conversation state is there
    (shared by the replicas), else the SQLite file ``CHATIR_HOME/outcomes.sqlite``."""
    url = postgres_url(settings)
    return SqliteOutcomeDatabase(settings.outcomes_db) if url is None else PostgresOutcomeDatabase(url)


def _check_postgres(url: str) -> None:
    if not url.startswith(SCHEMES):
        scheme = url.split(":", 1)[0] if ":" in url else "no scheme"
        raise ChatIRError(
            f"CHATIR_STATE_URL must start with one of {', '.join(SCHEMES)} (it starts with {scheme!r})"
        )
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as error:
        raise ChatIRError(
            'CHATIR_STATE_URL names PostgreSQL but psycopg is not installed: pip install "chatir-slack[agent]"'
        ) from error
