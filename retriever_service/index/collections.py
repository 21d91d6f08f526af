"""Which collection serves: one name for people (``CHATIR_COLLECTION``), one collection per model behind it.

A deployment starts with the collection ``<base>`` itself. ``chatir reindex --model NEW`` builds
``<base>__<model slug>_<hash>`` next to it and then points the alias ``<base>__active`` at it, in one
``update_collection_aliases`` call: atomic on a Qdrant server, and in the embedded store too (qdrant-client's local
mode keeps aliases in its ``meta.json``, replaced as a whole). Every :class:`~retriever_service.index.ImageIndex`
opened by name follows the alias when it exists; the collections it no longer points at stay until dropped.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import BaseModel

from chatir.errors import ChatIRError
from chatir.settings import Settings

ACTIVE_SUFFIX = "__active"
SIDECAR_SUFFIX = "__meta"  # store.META_SIDECAR_SUFFIX (kept here to avoid an import cycle)


class CollectionInfo(BaseModel):
    name: str
    model: str | None
    dim: int | None
    images: int
    active: bool


def active_alias(base: str) -> str:
    return base + ACTIVE_SUFFIX


def active_collection(client: Any, base: str) -> str:
    """The collection that serves ``base``: the alias' target when a reindex switched it, else ``base``."""
    alias = active_alias(base)
    for entry in client.get_aliases().aliases:
        if entry.alias_name == alias:
            return str(entry.collection_name)
    return base


def collection_for_model(base: str, model_id: str, dim: int) -> str:
    """The collection a reindex for ``model_id`` builds (stable: a stopped reindex finds it again)."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_id.lower()).strip("-")[-40:] or "model"
    digest = hashlib.sha256(f"{model_id}\0{dim}".encode()).hexdigest()[:8]
    return f"{base}__{slug}_{digest}"


def switch_active(client: Any, base: str, target: str) -> None:
    """Point ``<base>__active`` at ``target``: one atomic alias operation."""
    from qdrant_client import models

    alias = active_alias(base)
    operations: list[Any] = []
    if any(entry.alias_name == alias for entry in client.get_aliases().aliases):
        operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    operations.append(
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=target, alias_name=alias))
    )
    client.update_collection_aliases(change_aliases_operations=operations)


def family(client: Any, base: str) -> list[CollectionInfo]:
    """``base`` and the collections reindexes built for it, with their model, size and whether they serve."""
    from retriever_service.index.store import META_DIM, META_MODEL

    active = active_collection(client, base)
    names = sorted(
        c.name
        for c in client.get_collections().collections
        if (c.name == base or c.name.startswith(base + "__")) and not c.name.endswith(SIDECAR_SUFFIX)
    )
    found = []
    for name in names:
        info = client.get_collection(name)
        metadata = getattr(info.config, "metadata", None) or {}
        if META_MODEL not in metadata and client.collection_exists(name + SIDECAR_SUFFIX):
            points = client.retrieve(name + SIDECAR_SUFFIX, ids=[0], with_payload=True)
            metadata = (points[0].payload or {}) if points else {}
        dim = metadata.get(META_DIM)
        found.append(
            CollectionInfo(
                name=name,
                model=metadata.get(META_MODEL),
                dim=int(dim) if dim is not None else None,
                images=int(client.count(name, exact=True).count),
                active=name == active,
            )
        )
    return found


def drop(client: Any, settings: Settings, name: str) -> None:
    """Delete a collection of this deployment that does not serve (with its metadata sidecar)."""
    base = settings.collection
    members = {c.name: c for c in family(client, base)}
    if name not in members:
        raise ChatIRError(
            f"No collection {name!r} belongs to {base!r}; `chatir collections list` shows the ones that do."
        )
    if members[name].active:
        raise ChatIRError(f"The collection {name!r} is the one serving {base!r}; it cannot be dropped.")
    client.delete_collection(name)
    if client.collection_exists(name + SIDECAR_SUFFIX):
        client.delete_collection(name + SIDECAR_SUFFIX)


__all__ = [
    "ACTIVE_SUFFIX",
    "CollectionInfo",
    "active_alias",
    "active_collection",
    "collection_for_model",
    "drop",
    "family",
    "switch_active",
]
