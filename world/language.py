"""Captions: what a person's first message about a world image says -- one or two salient things, not all.

Each :class:`Caption` carries, beside its text, the claims it makes as a query (an :class:`~world.query.
Exists` over object descriptions, counts and scene conditions), so one can check exactly which images of a
corpus a caption fits (:meth:`Caption.matches`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from world.query import CountTest, Exists, ObjectFilter, SceneFilter, combine_regions
from world.scene import Scene, WorldObject, scene_rng
from world.vocab import (
    BACKDROP_PHRASE,
    COLOUR_WORDS,
    NOUN_PLURALS,
    NOUN_WORDS,
    NUMBER_WORDS,
    PATTERN_WITH,
    PATTERN_WORDS,
    PLURALS,
    SHAPE_WORDS,
    SIZE_WORDS,
    cell_of,
)

_PREFIXES = (
    "",
    "",
    "",
    "a picture of ",
    "an image of ",
    "a photo with ",
    "there is ",
    "i'm looking for ",
    "looking for ",
    "find ",
    "the one with ",
    "an image showing ",
)
_SIZE_WEIGHT = {"small": 1.0, "medium": 2.0, "large": 3.0}


@dataclass(frozen=True)
class Caption:
    """A caption and the claims it makes about its image."""

    text: str
    claims: Exists

    def matches(self, scene: Scene) -> bool:
        """True when the caption is true of ``scene``."""
        sf = self.claims.scene
        if not sf.matches(scene):
            return False
        return all(test.holds(len(f.select(scene.objects))) for f, test in self.claims.groups)


def caption_for(seed: int, index: int, scene: Scene, variant: int = 0) -> Caption:
    """The caption of image ``index`` of world ``seed`` (``variant`` gives other captions of the same image)."""
    return make_caption(scene, scene_rng(seed, index, f"caption/{variant}"))


def make_caption(scene: Scene, rng: random.Random) -> Caption:
    """A partial, true description of ``scene`` drawn with ``rng``."""
    groups: list[tuple[ObjectFilter, CountTest]] = []
    scene_claims: dict = {}
    if rng.random() < 0.72:
        main = _pick_salient(scene, rng)
        phrase, f, test = _object_phrase(scene, main, rng, min_attributes=2)
        plural = test.op == "=="
        groups.append((f, test))
        text = phrase
        extra = rng.random() * (0.65 if _n_attributes(f) <= 2 else 1.5)
        if extra < 0.45:
            suffix = _scene_suffix(scene, rng, scene_claims, groups)
            text = f"{text} {suffix}" if suffix else text
        elif extra < 0.65 and len(scene.objects) > 1:
            other = rng.choice([o for o in scene.objects if o is not main])
            phrase2, f2, test2 = _object_phrase(scene, other, rng, min_attributes=1, max_attributes=2)
            groups.append((f2, test2))
            joiner = rng.choice(("and", "next to", "with", "and also"))
            text = f"{text} {joiner} {phrase2}"
        prefix = rng.choice(_PREFIXES)
        text = (prefix.replace("there is", "there are") if plural else prefix) + text
    else:
        text = _scene_caption(scene, rng, scene_claims, groups)
    claims = Exists(tuple(groups), "and", SceneFilter(**scene_claims))
    return Caption(" ".join(text.split()), claims)


def _n_attributes(f: ObjectFilter) -> int:
    return sum(bool(x) for x in (f.shapes, f.colours, f.sizes, f.patterns)) + (f.cells is not None)


def _pick_salient(scene: Scene, rng: random.Random) -> WorldObject:
    weights = [_SIZE_WEIGHT[o.size] for o in scene.objects]
    return rng.choices(scene.objects, weights=weights, k=1)[0]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object_phrase(
    scene: Scene, obj: WorldObject, rng: random.Random, *, min_attributes: int, max_attributes: int = 4
) -> tuple[str, ObjectFilter, CountTest]:
    """("a big red star on the left", its filter, its count test) for ``obj``."""
    wanted = rng.choices((1, 2, 3, 4), weights=(0.0, 0.25, 0.55, 0.2))[0]
    wanted = max(min_attributes, min(wanted, max_attributes))
    weights = {
        "shape": 3.0,
        "colour": 3.0,
        "size": 1.5,
        "pattern": 1.0 if obj.pattern != "plain" else 0.3,
        "position": 1.2,
    }
    chosen: set[str] = set()
    while len(chosen) < wanted:
        names = [k for k in weights if k not in chosen]
        chosen.add(rng.choices(names, weights=[weights[k] for k in names])[0])
    if not chosen & {"shape", "colour"}:  # people name what the thing is or its colour
        chosen.discard(rng.choice(sorted(chosen)))
        chosen.add(rng.choice(("shape", "colour")))
    use_shape, use_colour, use_size = "shape" in chosen, "colour" in chosen, "size" in chosen
    use_pattern, use_position = "pattern" in chosen, "position" in chosen
    region_keys: list[str] = []
    region_text = ""
    if use_position:
        region_keys, region_text = _region_for(obj, rng)
    f = ObjectFilter(
        shapes=frozenset({obj.shape}) if use_shape else frozenset(),
        colours=frozenset({obj.colour}) if use_colour else frozenset(),
        sizes=frozenset({obj.size}) if use_size else frozenset(),
        patterns=frozenset({obj.pattern}) if use_pattern else frozenset(),
        cells=combine_regions(region_keys) if use_position else None,
    )
    count = len(f.select(scene.objects))
    plural = count > 1
    words: list[str] = []
    if use_size:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    with_pattern = ""
    if use_pattern:
        if rng.random() < 0.5:
            with_pattern = rng.choice(PATTERN_WITH[obj.pattern])
        else:
            words.append(rng.choice(PATTERN_WORDS[obj.pattern]))
    if use_colour:
        words.append(rng.choice(COLOUR_WORDS[obj.colour]))
    if use_shape:
        noun = rng.choice(SHAPE_WORDS[obj.shape])
        noun = _plural_noun(noun, obj.shape) if plural else noun
    else:
        noun = rng.choice(NOUN_PLURALS if plural else NOUN_WORDS)
    words.append(noun)
    head = " ".join(words)
    phrase = f"{NUMBER_WORDS[count]} {head}" if plural else f"{_article(head)} {head}"
    for tail in (with_pattern, region_text):
        if tail:
            phrase = f"{phrase} {tail}"
    test = CountTest("==", count) if plural else CountTest(">=", 1)
    return phrase, f, test


def _plural_noun(noun: str, shape: str) -> str:
    special = {
        "box": "boxes",
        "disc": "discs",
        "round shape": "round shapes",
        "plus sign": "plus signs",
        "donut": "donuts",
        "hoop": "hoops",
        "rhombus": "rhombuses",
    }
    return special.get(noun, PLURALS.get(noun, noun + "s"))


def _region_for(obj: WorldObject, rng: random.Random) -> tuple[list[str], str]:
    """Region keys and words for where ``obj`` is, at the level of detail a person might use."""
    row, col = cell_of(obj.position)
    choices: list[tuple[list[str], str]] = []
    vertical = {0: "top side", 2: "bottom side"}.get(row)
    horizontal = {0: "left side", 2: "right side"}.get(col)
    if vertical:
        words = "at the top" if row == 0 else "at the bottom"
        choices.append(([vertical], rng.choice((words, "near the " + words.split()[-1]))))
    if horizontal:
        words = "on the left" if col == 0 else "on the right"
        choices.append(([horizontal], rng.choice((words, words + " side"))))
    if vertical and horizontal:
        corner = f"{vertical.split()[0]} {horizontal.split()[0]}"
        choices.append(([vertical, horizontal], rng.choice((f"in the {corner} corner", f"in the {corner}"))))
    if not vertical and not horizontal:
        choices.append((["centre"], rng.choice(("in the middle", "in the centre", "in the center"))))
    return rng.choice(choices)


def _scene_suffix(scene: Scene, rng: random.Random, claims: dict, groups: list) -> str:
    """A second salient thing about the scene: background, backdrop, darkness, frame or the number of objects."""
    options = ["background", "backdrop", "count"]
    if scene.lighting == "dark":
        options += ["dark", "dark"]
    if scene.frame:
        options.append("frame")
    kind = rng.choice(options)
    if kind == "background":
        claims["backgrounds"] = frozenset({scene.background})
        word = rng.choice(COLOUR_WORDS[scene.background])
        a = _article(word)
        return rng.choice((f"on {a} {word} background", f"against {a} {word} background"))
    if kind == "backdrop":
        claims["backdrops"] = frozenset({scene.backdrop})
        phrase = rng.choice(BACKDROP_PHRASE[scene.backdrop])
        return rng.choice(("on ", "against ", "in front of ")) + phrase
    if kind == "dark":
        claims["lightings"] = frozenset({"dark"})
        return rng.choice(("in the dark", "at night", "in a dark picture", "in dim light"))
    if kind == "frame":
        claims["frame"] = True
        return rng.choice(("in a frame", "with a border", "inside a frame"))
    n = len(scene.objects)
    groups.append((ObjectFilter(), CountTest("==", n)))
    if n == 1:
        return rng.choice(("on its own", "alone", "and nothing else", "by itself"))
    others = n - 1
    noun = rng.choice(NOUN_WORDS if others == 1 else NOUN_PLURALS)
    return rng.choice(
        (
            f"and {NUMBER_WORDS[others]} other {noun}",
            f"among {NUMBER_WORDS[n]} {NOUN_PLURALS[0]}",
            f"with {NUMBER_WORDS[others]} more {noun}",
        )
    )


def _scene_caption(scene: Scene, rng: random.Random, claims: dict, groups: list) -> str:
    """A caption led by the scene: "two shapes on a blue background", "a dark picture with three objects"."""
    n = len(scene.objects)
    groups.append((ObjectFilter(), CountTest("==", n)))
    noun = rng.choice(NOUN_WORDS) if n == 1 else rng.choice(NOUN_PLURALS)
    count = rng.choice(("a single", "one")) + f" {noun}" if n == 1 else f"{NUMBER_WORDS[n]} {noun}"
    claims["backgrounds"] = frozenset({scene.background})
    colour = rng.choice(COLOUR_WORDS[scene.background])
    if rng.random() < 0.6:
        claims["backdrops"] = frozenset({scene.backdrop})
        place = rng.choice(_BACKDROP_WITH_COLOUR[scene.backdrop]).format(colour=colour)
        place = place.replace(f"a {colour}", f"{_article(colour)} {colour}")
        text = rng.choice((f"{count} on {place}", f"{place} with {count}"))
    else:
        a = _article(colour)
        text = rng.choice(
            (
                f"{count} on {a} {colour} background",
                f"{a} {colour} background with {count}",
                f"{count} against {a} {colour} background",
            )
        )
    extras = (["dark"] if scene.lighting == "dark" else []) + (["frame"] if scene.frame else [])
    if extras and rng.random() < 0.5:
        if rng.choice(extras) == "dark":
            claims["lightings"] = frozenset({"dark"})
            text = rng.choice((f"a dark picture of {text}", f"{text} at night", f"{text}, quite dark"))
        else:
            claims["frame"] = True
            text = rng.choice((f"a framed picture of {text}", f"{text} in a frame", f"{text} with a border"))
    return text


_BACKDROP_WITH_COLOUR = {
    "plain": ("a plain {colour} background",),
    "tiled": ("a {colour} tiled floor", "a {colour} grid floor", "{colour} tiles"),
    "gradient": ("a {colour} gradient sky", "a {colour} gradient", "a fading {colour} background"),
}
