"""Pick the conversation-state backend from settings: SQLite by default, PostgreSQL for shared state.

``CHATIR_STATE_URL`` unset: the SQLite file ``CHATIR_HOME/conversations.sqlite`` (one process or host).
``postgresql://…`` (or ``postgres://…``): :class:`agent.state_postgres.PostgresConversationStore`, so that
several bot or web replicas continue each other's conversations. ``sqlite:///path``: another SQLite file.
"""

from __future__ import annotations

from pathlib import Path

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
    if not url.startswith(SCHEMES):
        scheme = url.split(":", 1)[0] if ":" in url else "no scheme"
        raise ChatIRError(
            f"CHATIR_STATE_URL must start with one of {', '.join(SCHEMES)} (it starts with {scheme!r})"
        )
    try:
        from agent.state_postgres import PostgresConversationStore
    except ImportError as error:
        raise ChatIRError(
            'CHATIR_STATE_URL names PostgreSQL but psycopg is not installed: pip install "chatir-slack[agent]"'
        ) from error
    return PostgresConversationStore(url)
