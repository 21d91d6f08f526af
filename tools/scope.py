"""The search scope: what a conversation may search, bound by the caller and only ever narrowed.

A scope comes from trusted code (the Slack front-end knows the channel, the MCP server its start-up
flags), never from text a model or a user wrote. Model-supplied filters and runtime scopes are
*intersected* with it, so they can narrow what is searched but never widen it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from retriever_service.schemas import PUBLIC, SearchFilter


def _intersect(bound: Sequence[str] | None, wanted: Sequence[str] | None) -> list[str] | None:
    """``None`` means "no restriction"; two lists meet in their common entries (order of ``bound``)."""
    if bound is None:
        return None if wanted is None else list(dict.fromkeys(wanted))
    if wanted is None:
        return list(bound)
    wanted_set = set(wanted)
    return [item for item in dict.fromkeys(bound) if item in wanted_set]


class SearchScope(BaseModel):
    """Which images a search may return. ``None`` in a field means unrestricted on that axis.

    ``SearchScope()`` is public images only; ``SearchScope.unrestricted()`` is for trusted callers (admin
    CLI, evaluation) and must be asked for explicitly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: list[str] | None = Field(
        default_factory=lambda: [PUBLIC],
        description="Visibility groups (channel ids, group names, 'public') the caller may see; None = all.",
    )
    sources: list[str] | None = Field(None, description="Only images from these sources; None = any source.")
    tags: list[str] | None = Field(None, description="Only images with one of these tags; None = any tag.")
    exclude_ids: list[str] = Field(default_factory=list, description="Image ids never to return.")

    @classmethod
    def unrestricted(cls) -> SearchScope:
        """Every image in the index (trusted callers only)."""
        return cls(allowed=None)

    @property
    def is_empty(self) -> bool:
        """True when no image can match (an axis was narrowed to nothing)."""
        return any(axis is not None and not axis for axis in (self.allowed, self.sources, self.tags))

    def narrow(
        self,
        *,
        allowed: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> SearchScope:
        """This scope intersected with further restrictions (the result is never wider than ``self``)."""
        return SearchScope(
            allowed=_intersect(self.allowed, allowed),
            sources=_intersect(self.sources, sources),
            tags=_intersect(self.tags, tags),
            exclude_ids=list(dict.fromkeys([*self.exclude_ids, *exclude_ids])),
        )

    def intersect(self, other: SearchScope) -> SearchScope:
        """Both scopes at once: what each of them allows."""
        return self.narrow(
            allowed=other.allowed, sources=other.sources, tags=other.tags, exclude_ids=other.exclude_ids
        )

    def to_filter(self) -> SearchFilter | None:
        """The service-side filter (``None`` when nothing is restricted)."""
        if self.allowed is None and self.sources is None and self.tags is None:
            return None
        return SearchFilter(allowed=self.allowed, sources=self.sources, tags=self.tags)


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
