"""Multi-hot ground truth of a world scene: the targets of the vision tower's auxiliary attribute head."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from chatir.world.scene import Scene


def scene_attributes(scene: Scene) -> np.ndarray:
    """Multi-hot ground truth of a world scene for the auxiliary loss of the image-caption stage.

    Which (shape, colour) pairs occur; which shapes, colours, sizes and patterns occur; what shape and colour
    sits in each grid cell and its size and pattern; background colour and backdrop; dark; framed; number of objects.
    """
    from chatir.world.vocab import (
        BACKDROPS,
        BACKGROUNDS,
        COLOURS,
        MAX_OBJECTS,
        PATTERNS,
        POSITIONS,
        SHAPES,
        SIZES,
    )

    groups: list[tuple[int, list[int]]] = []

    def one_hot(size: int, *hot: int) -> None:
        groups.append((size, list(hot)))

    objects = scene.objects
    one_hot(
        len(SHAPES) * len(COLOURS),
        *[SHAPES.index(o.shape) * len(COLOURS) + COLOURS.index(o.colour) for o in objects],
    )
    one_hot(len(SHAPES), *[SHAPES.index(o.shape) for o in objects])
    one_hot(len(COLOURS), *[COLOURS.index(o.colour) for o in objects])
    one_hot(len(SIZES), *[SIZES.index(o.size) for o in objects])
    one_hot(len(PATTERNS), *[PATTERNS.index(o.pattern) for o in objects])
    one_hot(
        len(POSITIONS) * len(SHAPES),
        *[POSITIONS.index(o.position) * len(SHAPES) + SHAPES.index(o.shape) for o in objects],
    )
    one_hot(
        len(POSITIONS) * len(COLOURS),
        *[POSITIONS.index(o.position) * len(COLOURS) + COLOURS.index(o.colour) for o in objects],
    )
    one_hot(
        len(POSITIONS) * len(SIZES),
        *[POSITIONS.index(o.position) * len(SIZES) + SIZES.index(o.size) for o in objects],
    )
    one_hot(
        len(POSITIONS) * len(PATTERNS),
        *[POSITIONS.index(o.position) * len(PATTERNS) + PATTERNS.index(o.pattern) for o in objects],
    )
    one_hot(len(BACKGROUNDS), BACKGROUNDS.index(scene.background))
    one_hot(len(BACKDROPS), BACKDROPS.index(scene.backdrop))
    one_hot(1, *([0] if scene.lighting == "dark" else []))
    one_hot(1, *([0] if scene.frame else []))
    one_hot(MAX_OBJECTS, len(objects) - 1)
    vector = np.zeros(sum(size for size, _ in groups), dtype=np.float32)
    offset = 0
    for size, hot in groups:
        vector[[offset + h for h in hot]] = 1.0
        offset += size
    return vector
