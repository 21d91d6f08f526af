"""Multi-hot ground truth of a world scene: the targets of the vision tower's attribute head, and the axes of
the starter's attribute-code embedding space (:mod:`training.joint`, ``objective="code"``)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from world.scene import Scene


def _groups(scene: Scene | None) -> list[tuple[list[str], set[int]]]:
    """(names of the group's attributes, which of them hold for ``scene``) for every group, in order."""
    from world.vocab import (
        BACKDROPS,
        BACKGROUNDS,
        COLOURS,
        MAX_OBJECTS,
        PATTERNS,
        POSITIONS,
        SHAPES,
        SIZES,
    )

    objects = scene.objects if scene is not None else []
    groups: list[tuple[list[str], set[int]]] = []

    def single(name: str, values: tuple[str, ...], attribute: str) -> None:
        hot = {values.index(getattr(o, attribute)) for o in objects}
        groups.append(([f"{name}:{v}" for v in values], hot))

    def pair(name: str, first: tuple[str, ...], a: str, second: tuple[str, ...], b: str) -> None:
        hot = {first.index(getattr(o, a)) * len(second) + second.index(getattr(o, b)) for o in objects}
        groups.append(([f"{name}:{x}/{y}" for x in first for y in second], hot))

    pair("shape+colour", SHAPES, "shape", COLOURS, "colour")
    single("shape", SHAPES, "shape")
    single("colour", COLOURS, "colour")
    single("size", SIZES, "size")
    single("pattern", PATTERNS, "pattern")
    pair("at+shape", POSITIONS, "position", SHAPES, "shape")
    pair("at+colour", POSITIONS, "position", COLOURS, "colour")
    pair("at+size", POSITIONS, "position", SIZES, "size")
    pair("at+pattern", POSITIONS, "position", PATTERNS, "pattern")
    background = {BACKGROUNDS.index(scene.background)} if scene is not None else set()
    groups.append(([f"background:{b}" for b in BACKGROUNDS], background))
    backdrop = {BACKDROPS.index(scene.backdrop)} if scene is not None else set()
    groups.append(([f"backdrop:{b}" for b in BACKDROPS], backdrop))
    groups.append((["dark"], {0} if scene is not None and scene.lighting == "dark" else set()))
    groups.append((["framed"], {0} if scene is not None and scene.frame else set()))
    groups.append(
        ([f"objects:{n}" for n in range(1, MAX_OBJECTS + 1)], {len(objects) - 1} if objects else set())
    )
    # bindings and counts the dialogs talk about ("is the star striped?", "how many red shapes?")
    pair("shape+size", SHAPES, "shape", SIZES, "size")
    pair("shape+pattern", SHAPES, "shape", PATTERNS, "pattern")
    pair("colour+size", COLOURS, "colour", SIZES, "size")
    pair("colour+pattern", COLOURS, "colour", PATTERNS, "pattern")
    for name, values, attribute in (
        ("shape", SHAPES, "shape"),
        ("colour", COLOURS, "colour"),
        ("size", SIZES, "size"),
        ("pattern", PATTERNS, "pattern"),
    ):
        counts = [sum(getattr(o, attribute) == v for o in objects) for v in values]
        groups.append(([f"two+ {name}:{v}" for v in values], {i for i, c in enumerate(counts) if c >= 2}))
    colours = len({o.colour for o in objects})
    groups.append(([f"colours:{n}" for n in range(1, MAX_OBJECTS + 1)], {colours - 1} if objects else set()))
    return groups


def scene_attributes(scene: Scene) -> np.ndarray:
    """Multi-hot ground truth of a world scene (names: :func:`attribute_names`).

    Which (shape, colour) pairs occur; which shapes, colours, sizes and patterns occur; what shape and colour
    sits in each grid cell and its size and pattern; background colour and backdrop; dark; framed; number of
    objects; which shape and colour comes in which size and pattern; which values occur twice or more; how many
    different colours there are.
    """
    groups = _groups(scene)
    vector = np.zeros(sum(len(names) for names, _ in groups), dtype=np.float32)
    offset = 0
    for names, hot in groups:
        vector[[offset + h for h in sorted(hot)]] = 1.0
        offset += len(names)
    return vector


@lru_cache(maxsize=1)
def attribute_names() -> tuple[str, ...]:
    """A readable name for every position of :func:`scene_attributes` ("shape+colour:star/red", "dark", ...)."""
    return tuple(name for names, _ in _groups(None) for name in names)
