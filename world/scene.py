"""The ground truth of one world image: a few objects on a background, and how scenes are drawn by seed.

Scene ``index`` of the world with seed ``seed`` is a pure function of the two numbers (see :func:`sample_scene`),
so an image id such as ``w7-000042`` is enough to know exactly what the image shows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from world.vocab import (
    BACKDROPS,
    BACKGROUNDS,
    COLOURS,
    MAX_OBJECTS,
    PATTERNS,
    POSITIONS,
    SHAPES,
    SIZES,
    Backdrop,
    BackgroundColour,
    Colour,
    Lighting,
    Pattern,
    Position,
    Shape,
    Size,
)

SCENE_VERSION = 1
"""Bumped whenever sampling or rendering changes what an (seed, index) pair produces."""

DARK_PROBABILITY = 0.3
FRAME_PROBABILITY = 0.3


class WorldObject(BaseModel):
    """One shape in the picture."""

    model_config = ConfigDict(frozen=True)

    shape: Shape
    colour: Colour
    size: Size
    pattern: Pattern = "plain"
    position: Position = "centre"
    dx: float = Field(
        0.0, ge=-1.0, le=1.0, description="Horizontal jitter inside the cell (fraction of the room)."
    )
    dy: float = Field(
        0.0, ge=-1.0, le=1.0, description="Vertical jitter inside the cell (fraction of the room)."
    )


class Scene(BaseModel):
    """Objects (1-4, one per grid cell) on a background, with scene-wide attributes."""

    model_config = ConfigDict(frozen=True)

    objects: tuple[WorldObject, ...] = Field(..., min_length=1, max_length=MAX_OBJECTS)
    background: BackgroundColour = "white"
    backdrop: Backdrop = "plain"
    lighting: Lighting = "bright"
    frame: bool = False

    @model_validator(mode="after")
    def _one_object_per_cell(self) -> Scene:
        cells = [o.position for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a grid cell: {cells}")
        return self

    def select(self, **attributes: str | Iterable[str]) -> list[WorldObject]:
        """Objects whose attributes equal (or are among) the given values, e.g. ``select(colour="red")``."""
        wanted = {k: {v} if isinstance(v, str) else set(v) for k, v in attributes.items()}
        return [o for o in self.objects if all(getattr(o, k) in vs for k, vs in wanted.items())]


_ID_PATTERN = re.compile(r"^w(\d+)-(\d+)$")


def image_id(seed: int, index: int) -> str:
    """The id of image ``index`` of the world with ``seed``: ``w{seed}-{index:06d}``."""
    return f"w{seed}-{index:06d}"


def parse_image_id(value: str) -> tuple[int, int]:
    """(seed, index) of an image id; raises ``ValueError`` for anything else."""
    match = _ID_PATTERN.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a world image id (expected something like 'w7-000042')")
    return int(match.group(1)), int(match.group(2))


def scene_rng(seed: int, index: int, purpose: str = "scene") -> random.Random:
    """A random stream fixed by (seed, index, purpose); string seeds hash with SHA-512, same on every machine."""
    return random.Random(f"chatir-world/v{SCENE_VERSION}/{purpose}/{seed}/{index}")


def sample_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of the world with ``seed`` (deterministic, independent of image size)."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    rng = scene_rng(seed, index)
    background = rng.choice(BACKGROUNDS)
    n_objects = rng.randint(1, MAX_OBJECTS)
    cells = rng.sample(POSITIONS, n_objects)
    colours = [c for c in COLOURS if c != background]
    objects = tuple(
        WorldObject(
            shape=rng.choice(SHAPES),
            colour=rng.choice(colours),
            size=rng.choice(SIZES),
            pattern=rng.choice(PATTERNS),
            position=cell,
            dx=round(rng.uniform(-1, 1), 3),
            dy=round(rng.uniform(-1, 1), 3),
        )
        for cell in sorted(cells, key=POSITIONS.index)
    )
    return Scene(
        objects=objects,
        background=background,
        backdrop=rng.choice(BACKDROPS),
        lighting="dark" if rng.random() < DARK_PROBABILITY else "bright",
        frame=rng.random() < FRAME_PROBABILITY,
    )


def scene_from_id(value: str) -> Scene:
    """The scene of a world image id (no files needed)."""
    return sample_scene(*parse_image_id(value))
