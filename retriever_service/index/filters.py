"""A search scope (:class:`chatir.scope.SearchScope`, whose ``admits`` is the meaning) compiled into Qdrant filters.

Every condition goes *into* the vector query (Qdrant applies it while scoring), never after it, so k
results come back whenever k matching images exist. Conditions are any-of matches on list or keyword
payload fields: an image is visible when its ``allowed`` shares an entry with the filter's, comes from
one of ``sources`` and carries one of ``tags``. An empty list matches nothing (``None`` = no restriction).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chatir.schemas import SearchFilter
from chatir.scope import SearchScope
from retriever_service.index.records import is_image_id


@dataclass(frozen=True)
class Scope:
    """A :class:`SearchScope` compiled for the backends: ``must`` any-of conditions and ``excluded`` image ids
    (``tests/test_scope_properties.py``: what Qdrant returns under it is what the scope admits)."""

    must: tuple[tuple[str, tuple[str, ...]], ...] = ()
    excluded: tuple[str, ...] = ()
    empty: bool = field(default=False)
    """True when no image can match (an empty any-of list): callers return no hits without querying."""

    @classmethod
    def build(cls, search_filter: SearchFilter | None, exclude_ids: Iterable[str] = ()) -> Scope:
        """The compiled form of a service request's scope (its ``filter`` and ``exclude_ids``)."""
        return cls.of(SearchScope.from_filter(search_filter, exclude_ids))

    @classmethod
    def of(cls, scope: SearchScope) -> Scope:
        """The compiled form of ``scope``: one any-of condition per restricted axis, the excluded ids."""
        axes = (("allowed", scope.allowed), ("source", scope.sources), ("tags", scope.tags))
        must = tuple(
            (key, tuple(dict.fromkeys(str(v) for v in values))) for key, values in axes if values is not None
        )
        # An id that is not of our form cannot be in the index: dropping it never widens the scope.
        excluded = tuple(dict.fromkeys(i.lower() for i in scope.exclude_ids if is_image_id(i.lower())))
        return cls(must=must, excluded=excluded, empty=scope.is_empty)

    @property
    def unrestricted(self) -> bool:
        return not self.must and not self.excluded

    def excluded_uuids(self) -> list[uuid.UUID]:
        return [uuid.UUID(hex=i) for i in self.excluded]

    # --- backends ----------------------------------------------------------------------------------
    def to_client_filter(self) -> Any:
        """A ``qdrant_client.models.Filter`` (or None when unrestricted)."""
        from qdrant_client import models

        if self.unrestricted:
            return None
        must = [models.FieldCondition(key=k, match=models.MatchAny(any=list(v))) for k, v in self.must]
        must_not = (
            [models.HasIdCondition(has_id=[str(u) for u in self.excluded_uuids()])] if self.excluded else []
        )
        return models.Filter(must=must or None, must_not=must_not or None)

    def to_edge_filter(self) -> Any:
        """A ``qdrant_edge.Filter`` (or None when unrestricted)."""
        import qdrant_edge as qe

        if self.unrestricted:
            return None
        must = [qe.FieldCondition(k, match=qe.MatchAny(list(v))) for k, v in self.must]
        must_not = [qe.HasIdCondition(set(self.excluded_uuids()))] if self.excluded else []
        return qe.Filter(must=must or None, must_not=must_not or None)


__all__ = ["Scope"]
