"""The search scope: which images a search may return -- one type, one implementation of its meaning.

A scope comes from trusted code (the Slack front-end knows the channel, the MCP server its start-up flags),
never from text a model or a user wrote. Model-supplied filters and runtime scopes are *intersected* with it,
so they can narrow what is searched but never widen it.

:meth:`SearchScope.admits` is the meaning: an image is in scope when its ``allowed`` groups share an entry with
the scope's, its ``source`` is one of the scope's sources, it carries one of the scope's tags (``None`` on an
axis: no restriction; an empty list: nothing), and its id is not excluded. The Qdrant filters the index
compiles from a scope (``retriever_service.index.filters``), the in-memory searcher and the test fakes all
answer to it; ``tests/test_scope_properties.py`` checks that Qdrant agrees with it on random scopes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from chatir.schemas import PUBLIC, SearchFilter


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

    @classmethod
    def from_filter(cls, search_filter: SearchFilter | None, exclude_ids: Iterable[str] = ()) -> SearchScope:
        """The scope of a service request: its ``filter`` (``None``: unrestricted) and ``exclude_ids``."""
        if search_filter is None:
            return cls(allowed=None, exclude_ids=list(exclude_ids))
        return cls(
            allowed=search_filter.allowed,
            sources=search_filter.sources,
            tags=search_filter.tags,
            exclude_ids=list(exclude_ids),
        )

    @property
    def is_empty(self) -> bool:
        """True when no image can match (an axis was narrowed to nothing)."""
        return any(axis is not None and not axis for axis in (self.allowed, self.sources, self.tags))

    @property
    def is_unrestricted(self) -> bool:
        return self.allowed is None and self.sources is None and self.tags is None and not self.exclude_ids

    def admits(
        self,
        *,
        allowed: Iterable[str],
        source: str | None,
        tags: Iterable[str],
        image_id: str | None = None,
    ) -> bool:
        """Whether an image with these visibility groups, source, tags (and id) is in this scope."""
        if image_id is not None and image_id.lower() in {i.lower() for i in self.exclude_ids}:
            return False
        if self.allowed is not None and not set(self.allowed) & set(allowed):
            return False
        if self.sources is not None and source not in self.sources:
            return False
        return self.tags is None or bool(set(self.tags) & set(tags))

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
