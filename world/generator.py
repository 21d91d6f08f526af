"""Writing a world to disk: PNG files in shards of 1,000 plus a manifest of every scene.

Layout of a world folder::

    world.json             seed, n, size, version, complete
    manifest.jsonl         one line per image: {"id", "path", "scene"}
    images/000/w7-000000.png ...

Generation runs in a process pool, writes each file atomically and skips files that are already there and
whole, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError
from tqdm import tqdm

from chatir.errors import ChatIRError
from world.render import encode_png, render_scene
from world.scene import SCENE_VERSION, Scene, image_id, sample_scene

SHARD_SIZE = 1000
CHUNK_SIZE = 250
WORLD_FILE = "world.json"
MANIFEST_FILE = "manifest.jsonl"
IMAGES_DIR = "images"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class WorldError(ChatIRError):
    """A world folder cannot be written or read as asked."""


class WorldInfo(BaseModel):
    """What ``world.json`` records about a world folder."""

    seed: int = Field(..., ge=0)
    n: int = Field(..., ge=1)
    size: int = Field(..., ge=16)
    version: int = SCENE_VERSION
    complete: bool = False


class ManifestEntry(BaseModel):
    """One image of a world: its id, its path relative to the world folder, and its scene."""

    id: str
    path: str
    scene: Scene


def image_relpath(seed: int, index: int) -> str:
    """Path of an image relative to its world folder, e.g. ``images/003/w7-003141.png``."""
    return f"{IMAGES_DIR}/{index // SHARD_SIZE:03d}/{image_id(seed, index)}.png"


def is_complete_png(path: Path) -> bool:
    """True when ``path`` holds a whole PNG file (signature at the start, IEND chunk at the end)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if head != _PNG_SIGNATURE:
                return False
            handle.seek(-len(_PNG_END), os.SEEK_END)
            return handle.read() == _PNG_END
    except OSError:
        return False


def _render_chunk(job: tuple[str, int, int, Sequence[int]]) -> tuple[int, list[str], int]:
    """Worker: render the missing images of a chunk; returns (first index, manifest lines, images written)."""
    root, seed, size, indices = job
    written = 0
    lines: list[str] = []
    for index in indices:
        scene = sample_scene(seed, index)
        relpath = image_relpath(seed, index)
        lines.append(ManifestEntry(id=image_id(seed, index), path=relpath, scene=scene).model_dump_json())
        target = Path(root) / relpath
        if is_complete_png(target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        data = encode_png(render_scene(scene, size))
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        written += 1
    return indices[0], lines, written


def generate_world(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: int = 64,
    workers: int | None = None,
    progress: bool = True,
) -> WorldInfo:
    """Write images ``0..n-1`` of the world with ``seed`` to ``out_dir`` (resumable) and its manifest.

    ``workers`` processes render in parallel (default: all CPU cores; 1 renders in this process). Workers are
    spawned, so a script calling this with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard.
    Raises :class:`WorldError` when ``out_dir`` already holds a world with another seed, size or version.
    """
    if n < 1:
        raise WorldError(f"a world needs at least one image (got n={n})")
    if seed < 0:
        raise WorldError(f"the seed must be non-negative (got {seed})")
    if size < 16:
        raise WorldError(f"images must be at least 16 px (got size={size})")
    root = Path(out_dir)
    existing = read_world_info(root) if (root / WORLD_FILE).exists() else None
    if existing and (existing.seed, existing.size, existing.version) != (seed, size, SCENE_VERSION):
        raise WorldError(
            f"{root} already holds a world with seed {existing.seed}, size {existing.size} "
            f"(version {existing.version}); use another folder or the same seed and size"
        )
    root.mkdir(parents=True, exist_ok=True)
    info = WorldInfo(seed=seed, n=n, size=size, complete=False)
    _write_atomic(root / WORLD_FILE, info.model_dump_json(indent=2) + "\n")

    chunks = [range(start, min(start + CHUNK_SIZE, n)) for start in range(0, n, CHUNK_SIZE)]
    jobs = [(str(root), seed, size, list(chunk)) for chunk in chunks]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    lines: dict[int, list[str]] = {}
    with tqdm(total=n, desc=f"world {root.name or root}", unit="img", disable=not progress) as bar:
        for first, chunk_lines, _written in _run(jobs, workers):
            lines[first] = chunk_lines
            bar.update(len(chunk_lines))
    _write_atomic(
        root / MANIFEST_FILE, "".join(line + "\n" for first in sorted(lines) for line in lines[first])
    )
    info = WorldInfo(seed=seed, n=n, size=size, complete=True)
    _write_atomic(root / WORLD_FILE, info.model_dump_json(indent=2) + "\n")
    return info


def _run(jobs: list[tuple[str, int, int, list[int]]], workers: int) -> Iterator[tuple[int, list[str], int]]:
    if workers == 1:
        yield from map(_render_chunk, jobs)
        return
    # spawn: safe even when the caller has torch (and its thread pools) loaded
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_render_chunk, jobs)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_world_info(world_dir: str | Path) -> WorldInfo:
    """The ``world.json`` of a world folder; :class:`WorldError` when missing or unreadable."""
    path = Path(world_dir) / WORLD_FILE
    try:
        return WorldInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorldError(
            f"{world_dir} is not a world folder (no {WORLD_FILE}); run `chatir world generate`"
        ) from None
    except (OSError, ValidationError, ValueError) as error:
        raise WorldError(f"{path} is damaged ({error.__class__.__name__}); regenerate the world") from None


def load_manifest(world_dir: str | Path) -> list[ManifestEntry]:
    """Every image of a finished world, in index order."""
    root = Path(world_dir)
    info = read_world_info(root)
    if not info.complete:
        raise WorldError(f"the world in {root} is incomplete; rerun `chatir world generate` to finish it")
    entries: list[ManifestEntry] = []
    with (root / MANIFEST_FILE).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                entries.append(ManifestEntry.model_validate_json(line))
            except ValidationError as error:
                raise WorldError(
                    f"{root / MANIFEST_FILE} line {number} is not a valid entry: {error}"
                ) from None
    if len(entries) != info.n:
        raise WorldError(f"{root / MANIFEST_FILE} lists {len(entries)} images, {WORLD_FILE} says {info.n}")
    return entries


def manifest_scenes(world_dir: str | Path) -> list[Scene]:
    """The scenes of a finished world, in index order."""
    return [entry.scene for entry in load_manifest(world_dir)]


def iter_manifest_json(world_dir: str | Path) -> Iterator[dict]:
    """Raw manifest records (dicts), cheaper than :func:`load_manifest` for very large worlds."""
    with (Path(world_dir) / MANIFEST_FILE).open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)
