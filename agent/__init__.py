"""The conversation engine and the questioner G.

Front-ends build one engine (``agent.build_engine(settings)``) and call
``engine.handle(conversation_id, text, scope)`` for every chat message, ``engine.choose`` /
``engine.reject_all`` / ``engine.restart`` for buttons; each returns a :class:`TurnResult`.
"""

from agent.engine import (
    ConversationEngine,
    ConversationNotFoundError,
    InvalidMessageError,
    TurnResult,
)
from agent.factory import build_engine, build_questioner
from agent.search import InMemorySearcher, Searcher, ServiceSearcher
from agent.state import ConcurrentUpdateError, ConversationState, ConversationStore, StateStore
from agent.state_backends import open_state_store

__all__ = [
    "ConcurrentUpdateError",
    "ConversationEngine",
    "ConversationNotFoundError",
    "ConversationState",
    "ConversationStore",
    "InMemorySearcher",
    "InvalidMessageError",
    "Searcher",
    "ServiceSearcher",
    "StateStore",
    "TurnResult",
    "build_engine",
    "build_questioner",
    "open_state_store",
]
