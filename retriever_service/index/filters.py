"""Search scope (a :class:`SearchFilter` plus excluded ids) turned into Qdrant filters.

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

from retriever_service.index.records import is_image_id
from retriever_service.schemas import SearchFilter


@dataclass(frozen=True)
class Scope:
    """Backend-neutral search scope: ``must`` any-of conditions and ``excluded`` image ids."""

    must: tuple[tuple[str, tuple[str, ...]], ...] = ()
    excluded: tuple[str, ...] = ()
    empty: bool = field(default=False)
    """True when no image can match (an empty any-of list): callers return no hits without querying."""

    @classmethod
    def build(cls, search_filter: SearchFilter | None, exclude_ids: Iterable[str] = ()) -> Scope:
        must: list[tuple[str, tuple[str, ...]]] = []
        empty = False
        if search_filter is not None:
            for name in ("allowed", "sources", "tags"):
                values = getattr(search_filter, name)
                if values is None:
                    continue
                key = "source" if name == "sources" else name
                unique = tuple(dict.fromkeys(str(v) for v in values))
                if not unique:
                    empty = True
                must.append((key, unique))
        # An id that is not of our form cannot be in the index: dropping it never widens the scope.
        excluded = tuple(
            dict.fromkeys(i.lower() for i in exclude_ids if isinstance(i, str) and is_image_id(i.lower()))
        )
        return cls(must=tuple(must), excluded=excluded, empty=empty)

    @property
    def unrestricted(self) -> bool:
        return not self.must and not self.excluded

    def excluded_uuids(self) -> list[uuid.UUID]:
        return [uuid.UUID(hex=i) for i in self.excluded]

    def matches(self, payload: dict[str, Any]) -> bool:
        """Reference semantics of the scope on one payload (used by tests and sanity checks)."""
        if self.empty or payload.get("id") in self.excluded:
            return False
        for key, values in self.must:
            have = payload.get(key)
            have_set = set(have) if isinstance(have, list) else {have}
            if not have_set.intersection(values):
                return False
        return True

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
