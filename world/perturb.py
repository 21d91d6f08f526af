"""Near misses: scenes that differ from a target in one thing, and whether a dialog rules them out.

Training a retriever to tell a red star from a red circle, or a red star on blue from a blue star on red,
needs negatives that differ from the target in exactly that. :func:`perturb` changes one attribute of one
object (or swaps two objects' colours or shapes, or changes the scene); :func:`consistent` says whether a scene
still fits everything a dialog has established (the caption's claims and the oracle's answers), so a near miss
the dialog cannot rule out is never used as a negative.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from world.language import Caption
from world.oracle import Oracle
from world.scene import Scene, WorldObject
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

_KINDS = (
    ("colour", 3.0),
    ("shape", 3.0),
    ("size", 1.5),
    ("pattern", 1.5),
    ("position", 1.5),
    ("swap colours", 2.0),
    ("swap shapes", 1.0),
    ("background", 1.5),
    ("remove", 1.0),
    ("add", 1.0),
    ("backdrop", 0.7),
    ("lighting", 0.5),
    ("frame", 0.5),
)
IDK = "I don't know"


def _other(values: Sequence[str], current: str, rng: random.Random, exclude: Sequence[str] = ()) -> str:
    return rng.choice([v for v in values if v != current and v not in exclude])


def _with_objects(scene: Scene, objects: list[WorldObject]) -> Scene:
    ordered = tuple(sorted(objects, key=lambda o: POSITIONS.index(o.position)))
    return scene.model_copy(update={"objects": ordered})


def perturb(scene: Scene, rng: random.Random) -> Scene:
    """A valid scene that differs from ``scene`` in one respect (object colours never equal the background)."""
    objects = list(scene.objects)
    kind = rng.choices([k for k, _ in _KINDS], weights=[w for _, w in _KINDS])[0]
    if kind.startswith("swap") and len(objects) < 2:
        kind = "colour"
    if kind == "remove" and len(objects) < 2:
        kind = "add"
    if kind == "add" and len(objects) >= MAX_OBJECTS:
        kind = "shape"
    i = rng.randrange(len(objects))
    obj = objects[i]
    if kind == "colour":
        objects[i] = obj.model_copy(update={"colour": _other(COLOURS, obj.colour, rng, (scene.background,))})
    elif kind == "shape":
        objects[i] = obj.model_copy(update={"shape": _other(SHAPES, obj.shape, rng)})
    elif kind == "size":
        objects[i] = obj.model_copy(update={"size": _other(SIZES, obj.size, rng)})
    elif kind == "pattern":
        objects[i] = obj.model_copy(update={"pattern": _other(PATTERNS, obj.pattern, rng)})
    elif kind == "position":
        free = [p for p in POSITIONS if p not in {o.position for o in objects}]
        objects[i] = obj.model_copy(update={"position": rng.choice(free)})
    elif kind in ("swap colours", "swap shapes"):
        attribute = "colour" if kind == "swap colours" else "shape"
        j = rng.choice([k for k in range(len(objects)) if k != i])
        a, b = getattr(objects[i], attribute), getattr(objects[j], attribute)
        if a == b:  # nothing to swap: change one instead
            values = COLOURS if attribute == "colour" else SHAPES
            exclude = (scene.background,) if attribute == "colour" else ()
            objects[i] = objects[i].model_copy(update={attribute: _other(values, a, rng, exclude)})
        else:
            objects[i] = objects[i].model_copy(update={attribute: b})
            objects[j] = objects[j].model_copy(update={attribute: a})
    elif kind == "background":
        used = {o.colour for o in objects}
        choices = [b for b in BACKGROUNDS if b != scene.background and b not in used]
        if choices:
            return scene.model_copy(update={"background": rng.choice(choices)})
        objects[i] = obj.model_copy(update={"shape": _other(SHAPES, obj.shape, rng)})
    elif kind == "remove":
        objects.pop(i)
    elif kind == "add":
        free = [p for p in POSITIONS if p not in {o.position for o in objects}]
        objects.append(
            WorldObject(
                shape=rng.choice(SHAPES),
                colour=_other(COLOURS, scene.background, rng),
                size=rng.choice(SIZES),
                pattern=rng.choice(PATTERNS),
                position=rng.choice(free),
                dx=round(rng.uniform(-1, 1), 3),
                dy=round(rng.uniform(-1, 1), 3),
            )
        )
    elif kind == "backdrop":
        return scene.model_copy(update={"backdrop": _other(BACKDROPS, scene.backdrop, rng)})
    elif kind == "lighting":
        return scene.model_copy(update={"lighting": "bright" if scene.lighting == "dark" else "dark"})
    else:
        return scene.model_copy(update={"frame": not scene.frame})
    return _with_objects(scene, objects)


def consistent(scene: Scene, caption: Caption | None, facts: Sequence[tuple[str, str]]) -> bool:
    """True when ``scene`` fits the caption's claims and gives the same oracle answer to every question.

    ``facts`` are (question, answer) pairs in the oracle's own words; "I don't know" answers say nothing.
    """
    if caption is not None and not caption.matches(scene):
        return False
    oracle = Oracle(scene)
    return all(answer == IDK or oracle.answer(question) == answer for question, answer in facts)
