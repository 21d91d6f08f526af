"""Sharded indexing: which of the walked files (and indexed locations) belong to one ``--shard I/N``.

A file belongs to the shard its path *relative to the folder given on the command line* hashes to
(:func:`chatir.shard.shard_of`): the same folder mounted elsewhere on another machine splits the same way,
and a shard run again takes the same files, so the incremental indexer resumes it where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from chatir.shard import Shard


class _Walked(Protocol):
    path: Path
    root: Path


W = TypeVar("W", bound=_Walked)


def relative_key(path: Path, root: Path) -> str:
    """What a file's shard is computed from: its POSIX path relative to ``root`` (its name when it is the root)."""
    if path == root:
        return path.name
    return path.relative_to(root).as_posix()


def take_shard(candidates: Sequence[W], shard: Shard | None) -> tuple[list[W], int]:
    """The candidates of ``shard`` (all of them without one), and how many were left to the other shards."""
    if shard is None:
        return list(candidates), 0
    mine = [c for c in candidates if shard.owns(relative_key(c.path, c.root))]
    return mine, len(candidates) - len(mine)


def owns_location(location: str, roots: Iterable[Path], shard: Shard | None) -> bool:
    """Whether an indexed file ``location`` under one of the walked ``roots`` is this shard's to prune.

    Overlapping roots: the last root holding the file decides, as it does for the walk (the indexer keeps the
    last root's candidate of a file found twice). A file root counts from its folder, as the walk does."""
    if shard is None:
        return True
    path = Path(location)
    folders = [root.parent if root.is_file() else root for root in roots]
    holding = [folder for folder in folders if path == folder or path.is_relative_to(folder)]
    if not holding:
        return False
    return shard.owns(relative_key(path, holding[-1]))


__all__ = ["owns_location", "relative_key", "take_shard"]
