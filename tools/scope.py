"""The search scope for tools: :class:`chatir.scope.SearchScope` (the one scope type, defined in the base so the
service, the agent and the tool share its meaning) and reading it from a LangGraph runtime context.
"""

from __future__ import annotations

from chatir.scope import SearchScope

__all__ = ["SearchScope", "scope_from_context"]


def scope_from_context(context: object) -> SearchScope | None:
    """The scope carried by a LangGraph runtime context, if any.

    Accepted: a :class:`SearchScope` itself, an object with a ``search_scope`` attribute, or a mapping
    with a ``"search_scope"`` key (a SearchScope or a dict of its fields).
    """
    if context is None:
        return None
    if isinstance(context, SearchScope):
        return context
    value = (
        context.get("search_scope") if isinstance(context, dict) else getattr(context, "search_scope", None)
    )
    if value is None or isinstance(value, SearchScope):
        return value
    return SearchScope.model_validate(value)
