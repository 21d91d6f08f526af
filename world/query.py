"""Understanding a question about a world image: words -> atoms -> a :class:`Query`.

Rule-based on purpose: a phrase lexicon (synonyms, plurals, multi-word phrases) turns the question into atoms
(``SHAPE star``, ``COLOUR red``, ``REGION left side``, ``WH where``...), and a handful of rules read the atoms
as one of a few question forms (count, existence, open attribute, yes/no attribute check, choice, scene
questions). Any word the lexicon does not know makes the whole question :class:`Unknown`, so the oracle
says "I don't know" rather than answering a question it did not understand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from world.lexicon import Atom, lex
from world.vocab import POSITIONS, SIZES, cell_of

Attribute = Literal["colour", "shape", "size", "pattern", "position"]
OBJECT_ATTRIBUTES: tuple[Attribute, ...] = ("colour", "shape", "size", "pattern", "position")
PATTERNED = ("striped", "dotted", "checkered")

# kinds that describe objects (the content of an object question)
_OBJECT_KINDS = {"SHAPE", "NOUN", "COLOUR", "SIZE", "EXTREME", "PATTERN", "REGION", "NUMBER"}
_NOUN_KINDS = {"SHAPE", "NOUN"}
_VALUE_ATTRIBUTE = {
    "SHAPE": "shape",
    "COLOUR": "colour",
    "SIZE": "size",
    "PATTERN": "pattern",
    "REGION": "position",
}

# --- the meaning of a question ------------------------------------------------------------------------


def combine_regions(keys: list[str]) -> frozenset[str] | None:
    """Cells named together: "top" + "left" = top left; "middle" fills the axes nobody else named."""
    if not keys:
        return None
    rows: set[int] | None = None
    cols: set[int] | None = None
    corner = False
    centre = False
    for key in keys:
        if key == "centre":
            centre = True
        elif key == "corner":
            corner = True
        elif key in ("left side", "right side"):
            want = {0} if key == "left side" else {2}
            cols = want if cols is None else cols & want
        elif key in ("top side", "bottom side"):
            want = {0} if key == "top side" else {2}
            rows = want if rows is None else rows & want
    if centre and not corner:
        rows = {1} if rows is None else rows
        cols = {1} if cols is None else cols
    cells = set()
    for position in POSITIONS:
        row, col = cell_of(position)
        if rows is not None and row not in rows:
            continue
        if cols is not None and col not in cols:
            continue
        if corner and (row == 1 or col == 1):
            continue
        cells.add(position)
    return frozenset(cells)


@dataclass(frozen=True)
class ObjectFilter:
    """A description of objects; empty sets mean "any"."""

    shapes: frozenset[str] = frozenset()
    colours: frozenset[str] = frozenset()
    sizes: frozenset[str] = frozenset()
    patterns: frozenset[str] = frozenset()
    cells: frozenset[str] | None = None
    extreme: str | None = None  # "large": the biggest of those matching, "small": the smallest

    def matches(self, obj) -> bool:
        return (
            (not self.shapes or obj.shape in self.shapes)
            and (not self.colours or obj.colour in self.colours)
            and (not self.sizes or obj.size in self.sizes)
            and (not self.patterns or obj.pattern in self.patterns)
            and (self.cells is None or obj.position in self.cells)
        )

    def select(self, objects) -> list:
        chosen = [o for o in objects if self.matches(o)]
        if self.extreme and chosen:
            rank = [SIZES.index(o.size) for o in chosen]
            best = max(rank) if self.extreme == "large" else min(rank)
            chosen = [o for o, r in zip(chosen, rank, strict=True) if r == best]
        return chosen

    @property
    def is_empty(self) -> bool:
        return self == ObjectFilter()

    def constraint(self, attribute: str) -> frozenset[str] | None:
        """The values this filter allows for one attribute (None: any)."""
        values = {"shape": self.shapes, "colour": self.colours, "size": self.sizes, "pattern": self.patterns}
        if attribute == "position":
            return self.cells
        return values[attribute] or None


@dataclass(frozen=True)
class SceneFilter:
    """Conditions on the scene as a whole; ``None`` means "not asked"."""

    backgrounds: frozenset[str] | None = None
    backdrops: frozenset[str] | None = None
    lightings: frozenset[str] | None = None
    frame: bool | None = None

    def matches(self, scene) -> bool:
        return (
            (self.backgrounds is None or scene.background in self.backgrounds)
            and (self.backdrops is None or scene.backdrop in self.backdrops)
            and (self.lightings is None or scene.lighting in self.lightings)
            and (self.frame is None or scene.frame == self.frame)
        )

    @property
    def is_empty(self) -> bool:
        return self == SceneFilter()


@dataclass(frozen=True)
class CountTest:
    op: str = ">="
    n: int = 1

    def holds(self, k: int) -> bool:
        return {"==": k == self.n, ">": k > self.n, ">=": k >= self.n, "<": k < self.n, "<=": k <= self.n}[
            self.op
        ]


@dataclass(frozen=True)
class Unknown:
    reason: str


@dataclass(frozen=True)
class Count:
    filter: ObjectFilter
    scene: SceneFilter = SceneFilter()
    distinct: str | None = None  # count distinct values of this attribute instead of objects


@dataclass(frozen=True)
class Exists:
    groups: tuple[tuple[ObjectFilter, CountTest], ...]
    combine: Literal["and", "or"] = "and"
    scene: SceneFilter = SceneFilter()
    negate: bool = False  # "is the top left empty?"


@dataclass(frozen=True)
class AttrOpen:
    attribute: Attribute
    subject: ObjectFilter


@dataclass(frozen=True)
class AttrCheck:
    subject: ObjectFilter
    predicate: ObjectFilter
    every: bool = False  # "are all the shapes red?" (else "is the star red?")


@dataclass(frozen=True)
class AttrChoice:
    subject: ObjectFilter
    attribute: Attribute
    options: tuple[tuple[str, ObjectFilter], ...]  # (label, filter) per option


@dataclass(frozen=True)
class SameCheck:
    attribute: Attribute
    subject: ObjectFilter
    same: bool = True


@dataclass(frozen=True)
class Describe:
    filter: ObjectFilter


@dataclass(frozen=True)
class SceneOpen:
    attribute: Literal["background", "backdrop", "lighting", "brightness", "description"]


@dataclass(frozen=True)
class SceneCheck:
    scene: SceneFilter


@dataclass(frozen=True)
class SceneChoice:
    attribute: Literal["background", "backdrop", "lighting"]
    options: tuple[tuple[str, str], ...]  # (label as said, canonical value)


Query = (
    Unknown
    | Count
    | Exists
    | AttrOpen
    | AttrCheck
    | AttrChoice
    | SameCheck
    | Describe
    | SceneOpen
    | SceneCheck
    | SceneChoice
)


# --- parsing -------------------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def parse(question: str) -> Query:
    """The meaning of ``question``, or :class:`Unknown` when it is not understood (cached: queries are immutable)."""
    if not question or not question.strip():
        return Unknown("empty question")
    atoms = lex(question)
    unknown = [a.text for a in atoms if a.kind == "UNKNOWN"]
    if unknown:
        return Unknown(f"unknown words: {', '.join(unknown)}")
    if not atoms:
        return Unknown("nothing to answer")
    scene_query, atoms, scene = _take_scene(atoms)
    if scene_query is not None:
        return scene_query
    kinds = {a.kind for a in atoms}
    if not (kinds & (_OBJECT_KINDS | {"IT", "EMPTY"})) and not ("WH" in kinds and "ATTR" in kinds):
        whs = {a.value for a in atoms if a.kind == "WH"}
        if "howmany" not in whs and not ("what" in whs and kinds <= {"WH", "AUX", "DEF"}):
            return Unknown("no object or scene named")  # "what do you see?" goes on: describe everything
    return _object_query(atoms, scene)


def _values(atoms: list[Atom], kind: str) -> frozenset[str]:
    return frozenset(a.value for a in atoms if a.kind == kind)  # type: ignore[misc]


def _take_scene(atoms: list[Atom]) -> tuple[Query | None, list[Atom], SceneFilter]:
    """Reads background/lighting/frame words; returns a scene query, or the atoms left for an object query."""
    kinds = {a.kind for a in atoms}
    has_wh = "WH" in kinds
    wh = next((a.value for a in atoms if a.kind == "WH"), None)
    has_object = bool(kinds & {"SHAPE", "NOUN", "EXTREME", "SIZE", "NUMBER", "EMPTY"}) or ("REGION" in kinds)
    consumed: set[int] = set()
    backgrounds: set[str] = set()
    backdrops: set[str] = set()
    lightings: set[str] = set()
    frame: bool | None = None
    impossible_backdrop = False
    scene_choice: list[tuple[str, str, str]] = []  # (attribute, label, value)

    def adjacent_before(index: int, allowed: tuple[str, ...]) -> list[int]:
        """Atoms right before ``index`` (no word between) of the allowed kinds: "a [blue] background"."""
        taken: list[int] = []
        k = index - 1
        while k >= 0 and atoms[k].kind in allowed and atoms[k].end == atoms[k + 1].start:
            taken.append(k)
            k -= 1
        return taken

    bg_index = next((k for k, a in enumerate(atoms) if a.kind == "BG"), None)
    if bg_index is not None:
        consumed.add(bg_index)
        consumed.update(adjacent_before(bg_index, ("COLOUR", "BACKDROP", "PATTERN", "LIGHT", "OR")))
        if not has_object:  # "is the background blue?": every colour, pattern... is about the background
            consumed.update(
                k for k, a in enumerate(atoms) if a.kind in ("COLOUR", "BACKDROP", "PATTERN", "LIGHT", "OR")
            )
    for k, atom in enumerate(atoms):
        if atom.kind == "BACKDROP":  # "a blue tiled floor", "pink tiles"
            consumed.update(adjacent_before(k, ("COLOUR", "OR")))
    for k in sorted(consumed):
        atom = atoms[k]
        if atom.kind == "COLOUR":
            backgrounds.add(atom.value)  # type: ignore[arg-type]
            scene_choice.append(("background", atom.text, atom.value))  # type: ignore[arg-type]
        elif atom.kind == "BACKDROP":
            backdrops.add(atom.value)  # type: ignore[arg-type]
            scene_choice.append(("backdrop", atom.text, atom.value))  # type: ignore[arg-type]
        elif atom.kind == "PATTERN":
            # a background can be plain or tiled (checkered, patterned), never striped or dotted
            value = {"plain": "plain", "checkered": "tiled", "patterned": "tiled"}.get(atom.value)  # type: ignore[arg-type]
            if value is None:
                impossible_backdrop = True
            else:
                backdrops.add(value)
            scene_choice.append(("backdrop", atom.text, value or "-"))
        elif atom.kind == "LIGHT":
            lightings.add(atom.value)  # type: ignore[arg-type]
            scene_choice.append(("lighting", atom.text, atom.value))  # type: ignore[arg-type]
    for k, atom in enumerate(atoms):
        if k in consumed:
            continue
        if atom.kind == "LIGHT":
            lightings.add(atom.value)  # type: ignore[arg-type]
            scene_choice.append(("lighting", atom.text, atom.value))  # type: ignore[arg-type]
            consumed.add(k)
        elif atom.kind == "BACKDROP":
            backdrops.add(atom.value)  # type: ignore[arg-type]
            scene_choice.append(("backdrop", atom.text, atom.value))  # type: ignore[arg-type]
            consumed.add(k)
        elif atom.kind == "FRAME":
            frame = True
            consumed.add(k)
    scene = SceneFilter(
        backgrounds=frozenset(backgrounds) if backgrounds else None,
        backdrops=frozenset() if impossible_backdrop else (frozenset(backdrops) if backdrops else None),
        lightings=frozenset(lightings) if lightings else None,
        frame=frame,
    )
    rest = [a for k, a in enumerate(atoms) if k not in consumed]
    rest_kinds = {a.kind for a in rest}
    attr = next((a.value for a in rest if a.kind == "ATTR"), None)
    object_content = bool(rest_kinds & _OBJECT_KINDS) or "EMPTY" in rest_kinds
    scene_words = bool(
        bg_index is not None
        or lightings
        or backdrops
        or frame is not None
        or impossible_backdrop
        or attr in ("time", "lighting")
    )
    if object_content or not scene_words:
        return None, rest, scene
    if has_wh:
        if wh in ("what", "which"):
            if attr == "time":
                return SceneOpen("lighting"), rest, scene
            if attr == "lighting" or (lightings and attr is None):
                return SceneOpen("brightness"), rest, scene
            if attr == "colour" and bg_index is not None:
                return SceneOpen("background"), rest, scene
            if attr in ("backdrop", "pattern", "shape") and (bg_index is not None or backdrops):
                return SceneOpen("backdrop"), rest, scene
            if attr is None and bg_index is not None:
                return SceneOpen("description"), rest, scene
            if attr is None and backdrops:
                return SceneOpen("backdrop"), rest, scene
        return Unknown("cannot answer this about the scene"), rest, scene
    if "OR" in {a.kind for a in atoms} and len(scene_choice) >= 2:
        attributes = {c[0] for c in scene_choice}
        if len(attributes) == 1:
            options = tuple((label, value) for _, label, value in scene_choice)
            return SceneChoice(attributes.pop(), options), rest, scene  # type: ignore[arg-type]
    if scene.is_empty:
        return Unknown("nothing asked about the background"), rest, scene
    return SceneCheck(scene), rest, scene


def _filter(atoms: list[Atom]) -> ObjectFilter:
    patterns = set()
    for a in atoms:
        if a.kind == "PATTERN":
            patterns.update(PATTERNED if a.value == "patterned" else (a.value,))  # type: ignore[arg-type]
        elif a.kind == "ATTR" and a.value == "pattern" and not any(b.kind == "PATTERN" for b in atoms):
            patterns.update(PATTERNED)  # "does the star have a pattern?" (not "a checkerboard pattern")
    extreme = next((a.value for a in atoms if a.kind == "EXTREME"), None)
    return ObjectFilter(
        shapes=_values(atoms, "SHAPE"),
        colours=_values(atoms, "COLOUR"),
        sizes=_values(atoms, "SIZE"),
        patterns=frozenset(patterns),
        cells=combine_regions([a.value for a in atoms if a.kind == "REGION"]),  # type: ignore[misc]
        extreme=extreme,  # type: ignore[arg-type]
    )


def _count_test(atoms: list[Atom]) -> CountTest:
    numbers = [k for k, a in enumerate(atoms) if a.kind == "NUMBER"]
    if not numbers:
        return CountTest(">=", 1)
    k = numbers[0]
    op = atoms[k - 1].value if k > 0 and atoms[k - 1].kind == "CMP" else "=="
    return CountTest(op, atoms[k].value)  # type: ignore[arg-type]


def _object_query(atoms: list[Atom], scene: SceneFilter) -> Query:
    whs = [a.value for a in atoms if a.kind == "WH"]
    wh = "howmany" if "howmany" in whs else (whs[0] if whs else None)
    attr_atom = next((a for a in atoms if a.kind == "ATTR"), None)
    attr = attr_atom.value if attr_atom else None
    content = [a for a in atoms if a.kind not in ("WH", "AUX", "DEF")]
    if wh == "howmany":
        different = any(a.kind == "SAME" and a.value is False for a in atoms)
        distinct = None
        if attr in ("colour", "shape", "size", "pattern") and (different or attr_atom.text.endswith("s")):
            distinct = attr  # "how many colours", "how many kinds of shapes", "how many different sizes"
        elif different and any(a.kind == "NOUN" and a.value == "shapeword" for a in atoms):
            distinct = "shape"  # "how many different shapes"
        rest = [a for a in content if a.kind not in ("SAME",) and not (a.kind == "ATTR" and distinct)]
        rest = [a for a in rest if not (a.kind == "ATTR" and a.value != "pattern")]
        return Count(_filter(rest), scene, distinct)
    if wh == "where":
        if attr not in (None, "position"):
            return Unknown("'where' with another attribute")
        return AttrOpen("position", _filter([a for a in content if a.kind != "ATTR"]))
    if wh in ("what", "which"):
        rest = [a for a in content if a.kind != "ATTR"]
        if attr in OBJECT_ATTRIBUTES:
            return AttrOpen(attr, _filter(rest))  # type: ignore[arg-type]
        if attr is not None:
            return Unknown(f"cannot answer '{attr}' about objects")
        if any(a.kind in ("NUMBER", "CMP") for a in rest):
            return Unknown("a number in an open question")
        return Describe(_filter(rest))
    # yes/no questions and fragments
    if any(a.kind == "EMPTY" for a in atoms):
        rest = [a for a in content if a.kind not in ("EMPTY", "NOUN")]
        return Exists(((_filter(rest), CountTest(">=", 1)),), "and", scene, negate=True)
    same = next((a for a in atoms if a.kind == "SAME"), None)
    if same is not None:
        if attr not in OBJECT_ATTRIBUTES or attr == "position":
            return Unknown("same/different without an attribute")
        rest = [a for a in content if a.kind not in ("SAME", "ATTR", "ALL", "IT")]
        return SameCheck(attr, _filter(rest), bool(same.value))  # type: ignore[arg-type]
    has_aux = any(a.kind == "AUX" for a in atoms)
    if attr in OBJECT_ATTRIBUTES and not has_aux:
        values_named = any(_VALUE_ATTRIBUTE.get(a.kind) == attr for a in atoms)
        if not values_named:  # "colour of the star?"
            return AttrOpen(attr, _filter([a for a in content if a.kind != "ATTR"]))  # type: ignore[arg-type]
    if attr not in (None, "pattern", "colour", "shape", "size", "position"):
        return Unknown(f"cannot check '{attr}'")
    split = _subject_split(atoms)
    if split is not None:
        subject, predicate, every = split
        return _check(subject, predicate, every, scene)
    return _exists(content, scene)


def _subject_split(atoms: list[Atom]) -> tuple[list[Atom], list[Atom], bool] | None:
    """(subject atoms, predicate atoms, every) for "is the X P?", "are all X P?", "is it P?"; else None."""
    every = any(a.kind == "ALL" for a in atoms)
    it = next((a for a in atoms if a.kind == "IT"), None)
    start = None
    for k, atom in enumerate(atoms):
        if atom.kind in ("DEF", "ALL"):
            j = k + 1
            while j < len(atoms) and atoms[j].kind in ("COLOUR", "SIZE", "PATTERN", "EXTREME", "DEF", "ALL"):
                j += 1
            if j < len(atoms) and atoms[j].kind in _NOUN_KINDS:
                start, end = k, j
                break
    if start is None:
        if it is None and not every:
            return None
        # "is it striped?", "are they all red?": about every object in the picture
        return [], [a for a in atoms if _is_predicate_atom(a)], every
    subject = [a for a in atoms[start : end + 1] if a.kind not in ("DEF", "ALL")]
    tail = atoms[end + 1 :]
    # "the star on the left" is the subject when something else is said about it
    k = 0
    while k < len(tail) and tail[k].kind in ("REGION", "DEF"):
        k += 1
    if k and any(a.kind in _OBJECT_KINDS - {"REGION", "NOUN"} for a in tail[k:]):
        subject += [a for a in tail[:k] if a.kind == "REGION"]
        tail = tail[k:]
    predicate = [a for a in atoms[:start] + tail if _is_predicate_atom(a)]
    return subject, predicate, every


def _is_predicate_atom(atom: Atom) -> bool:
    return (
        atom.kind in _OBJECT_KINDS
        or atom.kind in ("OR", "CMP", "ALONE", "WITH", "OTHER")
        or (atom.kind == "ATTR" and atom.value == "pattern")
    )


def _check(subject_atoms: list[Atom], predicate: list[Atom], every: bool, scene: SceneFilter) -> Query:
    subject = _filter(subject_atoms)
    if any(a.kind in ("NUMBER", "CMP", "ALONE", "WITH", "OTHER") for a in predicate):
        return _exists(subject_atoms + predicate, scene)
    if not [a for a in predicate if a.kind != "NOUN"]:
        return Exists(((subject, CountTest(">=", 1)),), "and", scene)  # "do you see the star?"
    if any(a.kind == "OR" for a in predicate):
        options: list[tuple[str, ObjectFilter]] = []
        attributes = set()
        for atom in predicate:
            if atom.kind in _VALUE_ATTRIBUTE:
                attributes.add(_VALUE_ATTRIBUTE[atom.kind])
                options.append((_option_label(atom), _filter([atom])))
        if len(attributes) == 1 and len(options) >= 2:
            return AttrChoice(subject, attributes.pop(), tuple(options))  # type: ignore[arg-type]
        return Unknown("a choice between different kinds of things")
    return AttrCheck(subject, _filter([a for a in predicate if a.kind != "NOUN"]), every)


def _option_label(atom: Atom) -> str:
    if atom.kind == "REGION":
        return {
            "left side": "on the left",
            "right side": "on the right",
            "top side": "at the top",
            "bottom side": "at the bottom",
            "centre": "in the centre",
            "corner": "in a corner",
        }[atom.value]
    if atom.kind == "SHAPE":
        return f"a {atom.value}"
    return str(atom.value)


def _exists(content: list[Atom], scene: SceneFilter) -> Query:
    alone = any(a.kind == "ALONE" for a in content)
    content = [
        a
        for a in content
        if a.kind in _OBJECT_KINDS
        or a.kind in ("AND", "OR", "CMP", "WITH", "OTHER")
        or (a.kind == "ATTR" and a.value == "pattern")
    ]
    groups: list[list[Atom]] = [[]]
    joiners: list[str] = []
    for atom in content:
        if atom.kind in ("AND", "OR", "WITH"):
            groups.append([])
            joiners.append(atom.kind.lower())
        else:
            groups[-1].append(atom)
    merged: list[list[Atom]] = []
    for k, group in enumerate(groups):
        if not group:
            continue
        has_noun = any(a.kind in _NOUN_KINDS for a in group)
        if k > 0 and joiners[k - 1] == "with" and merged and not has_noun:
            merged[-1] = merged[-1] + group  # "a star with stripes": the same star
            continue
        if not has_noun and k + 1 < len(groups) and joiners[k] in ("and", "or"):
            group = group + [a for a in groups[k + 1] if a.kind == "SHAPE"]  # "a red or a blue star"
        merged.append(group)
    if not merged:
        return Unknown("nothing to look for")
    parts: list[tuple[ObjectFilter, CountTest]] = []
    for group in merged:
        test = _count_test(group)
        if any(a.kind == "OTHER" for a in group):  # "a star and two other shapes": three in all
            test = CountTest(test.op, test.n + len(merged) - 1)
        parts.append((_filter(group), test))
    if alone:  # "a star on its own": nothing else in the picture
        parts.append((ObjectFilter(), CountTest("==", len(merged))))
    combine = "or" if "or" in joiners else "and"
    return Exists(tuple(parts), combine, scene)  # type: ignore[arg-type]
