"""The oracle answerer: answers natural-language questions about a world image from its ground truth.

>>> Oracle(scene).answer("what colour is the star?")
'red'

Answers are short and natural ("yes", "no", "blue", "two", "top left", "there is no star"), and
``"I don't know"`` whenever the question is not understood (see :mod:`world.query`). The same formatting
functions give :func:`world.questions.possible_answers` its answer sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from world.query import (
    AttrCheck,
    AttrChoice,
    AttrOpen,
    Count,
    Describe,
    Exists,
    ObjectFilter,
    Query,
    SameCheck,
    SceneCheck,
    SceneChoice,
    SceneOpen,
    Unknown,
    parse,
)
from world.scene import Scene, WorldObject
from world.vocab import (
    BACKDROP_ANSWER,
    COLOURS,
    NUMBER_WORDS,
    PATTERNS,
    PLURALS,
    POSITION_ANSWER,
    POSITIONS,
    REGION_PHRASE,
    REGIONS,
    SHAPES,
    SIZES,
)

IDK = "I don't know"
YES, NO = "yes", "no"
SOME = {1: "one of them is", 2: "two of them are", 3: "three of them are"}
LIGHTING_ANSWER = {"bright": "day", "dark": "night"}
CELL_NAME = {
    "top left": "top left",
    "top": "top middle",
    "top right": "top right",
    "left": "middle left",
    "centre": "centre",
    "right": "middle right",
    "bottom left": "bottom left",
    "bottom": "bottom middle",
    "bottom right": "bottom right",
}
SEVERAL = {
    "colour": "several colours",
    "size": "different sizes",
    "pattern": "different patterns",
    "shape": "several shapes",
    "position": "in several places",
}
_ORDER = {"colour": COLOURS, "size": SIZES, "pattern": PATTERNS, "shape": SHAPES, "position": POSITIONS}
_SIZE_ADJECTIVE = {"small": "small", "medium": "medium-sized", "large": "large"}


class Oracle:
    """Answers questions about one scene."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene

    @classmethod
    def for_image(cls, image: str) -> Oracle:
        """The oracle of a world image given by id ("w7-000042") or file path (".../w7-000042.png")."""
        from pathlib import PurePath

        from world.scene import scene_from_id

        name = PurePath(image).stem if str(image).lower().endswith(".png") else str(image)
        return cls(scene_from_id(name))

    def answer(self, question: str) -> str:
        """A short answer, or ``"I don't know"`` when the question is not understood."""
        return answer_query(self.scene, parse(question))


def answer_query(scene: Scene, query: Query) -> str:
    objects = scene.objects
    match query:
        case Unknown():
            return IDK
        case Count(filter=f, scene=sf, distinct=distinct):
            chosen = f.select(objects) if sf.matches(scene) else []
            n = len({getattr(o, distinct) for o in chosen}) if distinct else len(chosen)
            return number_word(n)
        case Exists(groups=groups, combine=combine, scene=sf, negate=negate):
            results = [test.holds(len(f.select(objects))) for f, test in groups]
            found = sf.matches(scene) and (all(results) if combine == "and" else any(results))
            return yes_no(found != negate)
        case AttrOpen(attribute=attribute, subject=subject):
            chosen = subject.select(objects)
            if subject.is_empty:  # "what colours are the shapes?": name them all
                return list_values(attribute, chosen)
            return format_values(attribute, chosen) if chosen else no_such(subject)
        case AttrCheck(subject=subject, predicate=predicate, every=every):
            chosen = subject.select(objects)
            if not chosen:
                return no_such(subject)
            hits = sum(predicate.matches(o) for o in chosen)
            if hits == len(chosen):
                return YES
            if hits == 0 or every:
                return NO
            return SOME[hits]
        case AttrChoice(subject=subject, attribute=attribute, options=options):
            chosen = subject.select(objects)
            if not chosen:
                return no_such(subject)
            labels: set[str] = set()
            for obj in chosen:
                label = next((lab for lab, f in options if f.matches(obj)), None)
                if label is None:
                    return (
                        "neither, "
                        + ("it is " if len(chosen) == 1 else "they are ")
                        + format_values(attribute, chosen)
                    )
                labels.add(label)
            return join_and([lab for lab, _ in options if lab in labels])
        case SameCheck(attribute=attribute, subject=subject, same=same):
            chosen = subject.select(objects)
            if not chosen:
                return no_such(subject)
            alike = len({getattr(o, attribute) for o in chosen}) == 1
            return yes_no(alike == same)
        case Describe(filter=f):
            chosen = f.select(objects)
            if not chosen:
                return "nothing"
            full = (f.cells is not None and f == ObjectFilter(cells=f.cells)) or f.is_empty
            return join_and([describe_object(o) if full else f"a {o.shape}" for o in chosen])
        case SceneOpen(attribute=attribute):
            if attribute == "background":
                return scene.background
            if attribute == "backdrop":
                return BACKDROP_ANSWER[scene.backdrop]
            if attribute == "lighting":
                return LIGHTING_ANSWER[scene.lighting]
            if attribute == "brightness":
                return scene.lighting
            return describe_background(scene.background, scene.backdrop)
        case SceneCheck(scene=sf):
            return yes_no(sf.matches(scene))
        case SceneChoice(attribute=attribute, options=options):
            actual = {"background": scene.background, "backdrop": scene.backdrop, "lighting": scene.lighting}[
                attribute
            ]
            for label, value in options:
                if value == actual:
                    return label
            value_text = {
                "background": scene.background,
                "backdrop": BACKDROP_ANSWER[scene.backdrop],
                "lighting": LIGHTING_ANSWER[scene.lighting],
            }[attribute]
            return f"neither, it is {value_text}"
    return IDK  # pragma: no cover - every query type is handled above


# --- formatting (shared with the answer sets of the question bank) ---------------------------------------


def yes_no(value: bool) -> str:
    return YES if value else NO


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def join_and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def format_values(attribute: str, objects: Sequence[WorldObject]) -> str:
    """How the oracle names the ``attribute`` of ``objects`` ("red", "red and blue", "several colours")."""
    if attribute == "position":
        cells = [o.position for o in objects]
        return value_phrase("position", sorted(set(cells), key=POSITIONS.index))
    if attribute == "shape":
        shapes = sorted({o.shape for o in objects}, key=SHAPES.index)
        if len(shapes) == 1:
            return shape_phrase(shapes[0], len(objects))
        return value_phrase("shape", shapes)
    values = sorted({getattr(o, attribute) for o in objects}, key=_ORDER[attribute].index)
    return value_phrase(attribute, values)


def list_values(attribute: str, objects: Sequence[WorldObject]) -> str:
    """Every value, however many: "a star, a circle and two hearts", "red, blue and green"."""
    if attribute == "shape":
        counts = {s: sum(o.shape == s for o in objects) for s in SHAPES}
        return join_and([shape_phrase(s, k) for s, k in counts.items() if k])
    if attribute == "position":
        cells = sorted({o.position for o in objects}, key=POSITIONS.index)
        return POSITION_ANSWER[cells[0]] if len(cells) == 1 else join_and([CELL_NAME[c] for c in cells])
    return join_and(sorted({getattr(o, attribute) for o in objects}, key=_ORDER[attribute].index))


def value_phrase(attribute: str, values: Sequence[str]) -> str:
    """The answer naming these distinct values (in vocabulary order) of one attribute."""
    if len(values) >= 3:
        return SEVERAL[attribute]
    if attribute == "position":
        if len(values) == 1:
            return POSITION_ANSWER[values[0]]
        return join_and([CELL_NAME[v] for v in values])
    if attribute == "shape":
        return join_and([f"a {v}" for v in values])
    return join_and(list(values))


def shape_phrase(shape: str, count: int) -> str:
    return f"a {shape}" if count == 1 else f"{number_word(count)} {PLURALS[shape]}"


def describe_object(obj: WorldObject) -> str:
    """ "a large red striped star" (plain objects have no pattern word)."""
    pattern = "" if obj.pattern == "plain" else f" {obj.pattern}"
    return f"a {_SIZE_ADJECTIVE[obj.size]} {obj.colour}{pattern} {obj.shape}"


def describe_background(background: str, backdrop: str) -> str:
    return {
        "plain": f"plain {background}",
        "tiled": f"a {background} tiled floor",
        "gradient": f"a {background} gradient",
    }[backdrop]


def no_such(subject: ObjectFilter) -> str:
    """ "there is no red star on the left"."""
    return f"there is no {filter_phrase(subject)}"


def filter_phrase(f: ObjectFilter) -> str:
    """A noun phrase for the objects a filter describes: "large red striped star in the top left"."""
    words: list[str] = []
    if f.sizes:
        words.append(_or(_SIZE_ADJECTIVE[s] for s in SIZES if s in f.sizes))
    if f.patterns:
        patterned = {"striped", "dotted", "checkered"}
        words.append("patterned" if f.patterns == patterned else _or(p for p in PATTERNS if p in f.patterns))
    if f.colours:
        words.append(_or(c for c in (*COLOURS, "gray") if c in f.colours))
    words.append(_or(s for s in SHAPES if s in f.shapes) if f.shapes else "object")
    if f.cells is not None:
        words.append(region_phrase(f.cells))
    return " ".join(words)


def region_phrase(cells: frozenset[str]) -> str:
    for key, region in REGIONS.items():
        if region == cells:
            return REGION_PHRASE[key]
    if not cells:
        return "nowhere"
    return "in the " + _or(CELL_NAME[c] for c in POSITIONS if c in cells)


def _or(values: Iterable[str]) -> str:
    items = list(values)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
