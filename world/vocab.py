"""The world's vocabulary: the canonical attribute values, how they look, and the words people use for them.

Everything else in :mod:`world` (scenes, rendering, captions, the oracle, the question bank) draws its
values and words from here, so one edit adds a colour or a synonym everywhere.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Shape = Literal["circle", "square", "triangle", "star", "heart", "cross", "ring", "diamond"]
Colour = Literal["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "white", "black"]
BackgroundColour = Literal["white", "gray", "black", "blue", "green", "yellow", "pink", "purple"]
Size = Literal["small", "medium", "large"]
Pattern = Literal["plain", "striped", "dotted", "checkered"]
Position = Literal[
    "top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"
]
"""The nine cells of the 3x3 grid, row by row. ``"top"`` is the top-middle cell, ``"left"`` the middle-left one."""
Backdrop = Literal["plain", "tiled", "gradient"]
Lighting = Literal["bright", "dark"]

SHAPES: Final[tuple[str, ...]] = get_args(Shape)
COLOURS: Final[tuple[str, ...]] = get_args(Colour)
BACKGROUNDS: Final[tuple[str, ...]] = get_args(BackgroundColour)
SIZES: Final[tuple[str, ...]] = get_args(Size)
PATTERNS: Final[tuple[str, ...]] = get_args(Pattern)
POSITIONS: Final[tuple[str, ...]] = get_args(Position)
BACKDROPS: Final[tuple[str, ...]] = get_args(Backdrop)
LIGHTINGS: Final[tuple[str, ...]] = get_args(Lighting)

PLURALS: Final = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "heart": "hearts",
    "cross": "crosses",
    "ring": "rings",
    "diamond": "diamonds",
}

COLOUR_RGB: Final = {
    "red": (220, 30, 35),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 25),
    "green": (30, 165, 55),
    "blue": (30, 85, 230),
    "purple": (135, 45, 190),
    "pink": (255, 120, 190),
    "brown": (125, 72, 30),
    "white": (246, 246, 246),
    "black": (18, 18, 18),
}

BACKGROUND_RGB: Final = {
    "white": (232, 232, 226),
    "gray": (128, 128, 128),
    "black": (34, 34, 40),
    "blue": (105, 155, 225),
    "green": (120, 185, 115),
    "yellow": (238, 222, 135),
    "pink": (242, 178, 200),
    "purple": (165, 125, 200),
}

SIZE_FRACTION: Final = {"small": 0.42, "medium": 0.66, "large": 0.92}
"""Diameter of an object as a fraction of its grid cell."""

NUMBER_WORDS: Final = ("none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_OBJECTS: Final = 4


def cell_of(position: str) -> tuple[int, int]:
    """(row, column) of a grid cell, 0-based from the top left."""
    index = POSITIONS.index(position)
    return divmod(index, 3)


def position_at(row: int, col: int) -> str:
    return POSITIONS[row * 3 + col]


# --- places a phrase can name: a set of cells ---------------------------------------------------------
REGIONS: Final[dict[str, frozenset[str]]] = {
    **{p: frozenset({p}) for p in POSITIONS},
    # sides: "on the left" means any cell of the left column
    "left side": frozenset({"top left", "left", "bottom left"}),
    "right side": frozenset({"top right", "right", "bottom right"}),
    "top side": frozenset({"top left", "top", "top right"}),
    "bottom side": frozenset({"bottom left", "bottom", "bottom right"}),
    "corner": frozenset({"top left", "top right", "bottom left", "bottom right"}),
}

POSITION_ANSWER: Final = {
    "top left": "top left",
    "top": "at the top",
    "top right": "top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "bottom left",
    "bottom": "at the bottom",
    "bottom right": "bottom right",
}
"""How the oracle says where an object is."""

REGION_PHRASE: Final = {
    "top left": "in the top left",
    "top": "in the top middle",
    "top right": "in the top right",
    "left": "in the middle left",
    "centre": "in the centre",
    "right": "in the middle right",
    "bottom left": "in the bottom left",
    "bottom": "in the bottom middle",
    "bottom right": "in the bottom right",
    "left side": "on the left",
    "right side": "on the right",
    "top side": "at the top",
    "bottom side": "at the bottom",
    "corner": "in a corner",
}
"""A prepositional phrase for every region, used in captions, questions and answers."""

# --- words people use (captions pick among them; the oracle understands all of them) ------------------
COLOUR_WORDS: Final = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden"),
    "green": ("green", "emerald"),
    "blue": ("blue", "azure"),
    "purple": ("purple", "violet"),
    "pink": ("pink", "rose"),
    "brown": ("brown", "chocolate"),
    "white": ("white", "snow-white"),
    "black": ("black", "jet-black"),
    "gray": ("gray", "grey"),
}
EXTRA_COLOUR_WORDS: Final = {
    "maroon": "red",
    "cherry": "red",
    "amber": "orange",
    "gold": "yellow",
    "lemon": "yellow",
    "lime": "green",
    "olive": "green",
    "navy": "blue",
    "cobalt": "blue",
    "lilac": "purple",
    "lavender": "purple",
    "magenta": "pink",
    "fuchsia": "pink",
    "tan": "brown",
    "ivory": "white",
    "silver": "gray",
}
"""Colour words the oracle understands but captions never use."""

SHAPE_WORDS: Final = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "cross": ("cross", "plus sign"),
    "ring": ("ring", "donut", "hoop"),
    "diamond": ("diamond", "rhombus"),
}
SIZE_WORDS: Final = {
    "small": ("small", "tiny", "little"),
    "medium": ("medium-sized", "mid-sized", "medium"),
    "large": ("large", "big", "huge"),
}
PATTERN_WORDS: Final = {
    "plain": ("plain", "solid"),
    "striped": ("striped", "stripy"),
    "dotted": ("dotted", "polka-dot", "spotted"),
    "checkered": ("checkered", "chequered", "checked"),
}
PATTERN_WITH: Final = {
    "plain": ("in a single colour",),
    "striped": ("with stripes",),
    "dotted": ("with dots", "with polka dots", "with spots"),
    "checkered": ("with a checkerboard pattern", "with checks"),
}
NOUN_WORDS: Final = ("shape", "object", "thing", "figure")
NOUN_PLURALS: Final = ("shapes", "objects", "things", "figures")
BACKDROP_PHRASE: Final = {
    "plain": ("a plain background",),
    "tiled": ("a tiled floor", "a grid floor", "a tiled background"),
    "gradient": ("a gradient sky", "a gradient background", "a fading background"),
}
BACKDROP_ANSWER: Final = {"plain": "plain", "tiled": "a tiled floor", "gradient": "a gradient"}
