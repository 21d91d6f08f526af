"""Understanding a question about a world image: words -> atoms -> a :class:`Query`.

Rule-based on purpose: a phrase lexicon (synonyms, plurals, multi-word phrases) turns the question into atoms
(``SHAPE star``, ``COLOUR red``, ``REGION left side``, ``WH where``...), and a handful of rules read the atoms
as one of a few question forms (count, existence, open attribute, yes/no attribute check, choice, scene
questions). Any word the lexicon does not know makes the whole question :class:`Unknown`, so the oracle
says "I don't know" rather than answering a question it did not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from chatir.world.vocab import (
    COLOUR_WORDS,
    EXTRA_COLOUR_WORDS,
    PLURALS,
    POSITIONS,
    SIZES,
    cell_of,
)

Attribute = Literal["colour", "shape", "size", "pattern", "position"]
OBJECT_ATTRIBUTES: tuple[Attribute, ...] = ("colour", "shape", "size", "pattern", "position")
PATTERNED = ("striped", "dotted", "checkered")

# --- atoms ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    kind: str
    value: object = None
    text: str = ""


# kinds that describe objects (the content of an object question)
_OBJECT_KINDS = {"SHAPE", "NOUN", "COLOUR", "SIZE", "EXTREME", "PATTERN", "REGION", "NUMBER"}
_NOUN_KINDS = {"SHAPE", "NOUN"}
_VALUE_ATTRIBUTE = {"SHAPE": "shape", "COLOUR": "colour", "SIZE": "size", "PATTERN": "pattern", "REGION": "position"}

_FILLER = """
a an any in on at of to with by for from into inside within around please picture pictures image images photo
photos photograph photographs scene drawing painting you i me we us tell know see seen visible shown show shows
showing contain contains containing include includes including there here present appear appears exist exists
's look looks like located placed positioned situated sitting lying drawn painted coloured colored filled made
shaped sized about so well ok okay also else not no do does did be being been am is are was were has have having
had will would could can should may might actually really currently overall whole entire total altogether
somewhere anywhere
""".split()
_AUX = {"is", "are", "was", "were", "does", "do", "did", "has", "have", "can", "could", "would", "will", "am"}


@lru_cache(maxsize=1)
def lexicon() -> dict[tuple[str, ...], tuple[Atom, ...]]:
    """Phrase (tuple of words) -> atoms. Longest phrases win when the question is read."""
    lex: dict[tuple[str, ...], tuple[Atom, ...]] = {}

    def add(phrase: str, *atoms: Atom) -> None:
        lex[tuple(phrase.split())] = atoms

    for word in _FILLER:
        add(word)
    for word in _AUX:
        add(word, Atom("AUX", word, word))
    # question words
    add("what", Atom("WH", "what", "what"))
    add("which", Atom("WH", "which", "which"))
    add("where", Atom("WH", "where", "where"))
    for phrase in ("how many", "how much", "number", "count", "what number"):
        add(phrase, Atom("WH", "howmany", phrase))
    for phrase in ("how big", "how large", "how small", "how tiny", "how huge"):
        add(phrase, Atom("WH", "what", phrase), Atom("ATTR", "size", phrase))
    # attribute names
    for word in ("colour", "color", "colours", "colors", "hue", "shade"):
        add(word, Atom("ATTR", "colour", word))
    for word in ("size", "sizes"):
        add(word, Atom("ATTR", "size", word))
    for word in ("pattern", "patterns", "texture", "textures", "design", "fill", "surface"):
        add(word, Atom("ATTR", "pattern", word))
    for word in ("position", "location", "place", "side", "part", "area", "spot"):
        add(word, Atom("ATTR", "position", word))
    for word in ("kind", "type", "sort", "kinds", "types", "sorts", "style"):
        add(word, Atom("ATTR", "kind", word))
    for phrase in ("time", "time of day", "time of the day"):
        add(phrase, Atom("ATTR", "time", phrase))
    for word in ("shape", "shapes"):
        add(word, Atom("NOUN", "shapeword", word))
    for word in ("object", "objects", "thing", "things", "item", "items", "figure", "figures", "element",
                 "elements", "symbol", "symbols", "icon", "icons", "form", "forms", "ones", "anything",
                 "something", "everything"):
        add(word, Atom("NOUN", None, word))
    add("one", Atom("ONE", None, "one"))
    # shapes
    shape_words = {
        "circle": ["circle", "disc", "disk", "round", "circular", "round shape", "ball", "dot shape"],
        "square": ["square", "box", "rectangle", "rectangular", "block"],
        "triangle": ["triangle", "triangular"],
        "star": ["star", "starry", "star shaped"],
        "heart": ["heart", "heart shaped"],
        "cross": ["cross", "plus", "plus sign", "plus shape", "cross shaped"],
        "ring": ["ring", "donut", "doughnut", "hoop", "circle outline", "hollow circle", "ring shaped"],
        "diamond": ["diamond", "rhombus", "lozenge", "diamond shaped"],
    }
    plural_extra = {"box": "boxes", "disc": "discs", "disk": "disks", "rectangle": "rectangles",
                    "block": "blocks", "plus": "pluses", "plus sign": "plus signs", "donut": "donuts",
                    "doughnut": "doughnuts", "hoop": "hoops", "rhombus": "rhombuses", "lozenge": "lozenges",
                    "ball": "balls"}
    for shape, words in shape_words.items():
        for word in words:
            add(word, Atom("SHAPE", shape, word))
        add(PLURALS[shape], Atom("SHAPE", shape, PLURALS[shape]))
        for word in words:
            if word in plural_extra:
                add(plural_extra[word], Atom("SHAPE", shape, plural_extra[word]))
    # colours (modifiers before a colour are dropped later)
    for colour, words in COLOUR_WORDS.items():
        for word in words:
            add(word.replace("-", " "), Atom("COLOUR", colour, word))
    for word, colour in EXTRA_COLOUR_WORDS.items():
        add(word, Atom("COLOUR", colour, word))
    for word in ("pale", "deep", "vivid", "bright", "light", "dark", "dull", "soft", "pastel", "neon"):
        lex.setdefault((word,), (Atom("MOD", word, word),))
    # sizes
    for word in ("small", "tiny", "little", "smallish", "mini", "miniature"):
        add(word, Atom("SIZE", "small", word))
    for phrase in ("medium", "medium sized", "medium size", "mid sized", "mid size", "middle sized",
                   "average sized", "average size", "moderate", "moderately sized", "normal sized"):
        add(phrase, Atom("SIZE", "medium", phrase))
    for word in ("large", "big", "huge", "giant", "enormous", "largish", "biggish"):
        add(word, Atom("SIZE", "large", word))
    for word in ("largest", "biggest"):
        add(word, Atom("EXTREME", "large", word))
    for word in ("smallest", "tiniest"):
        add(word, Atom("EXTREME", "small", word))
    # patterns
    pattern_words = {
        "plain": ["plain", "solid", "unpatterned", "uniform", "flat", "single colour", "single color",
                  "one colour", "one color", "no pattern"],
        "striped": ["striped", "stripes", "stripe", "stripy", "stripey", "lined", "lines", "streaked"],
        "dotted": ["dotted", "dots", "dot", "polka dot", "polka dots", "polka dotted", "spotted", "spots",
                   "spotty", "dotty", "speckled"],
        "checkered": ["checkered", "chequered", "checked", "checks", "checker", "checkerboard",
                      "chessboard", "checkers", "plaid", "chequerboard", "checkered pattern"],
    }
    for pattern, words in pattern_words.items():
        for word in words:
            add(word, Atom("PATTERN", pattern, word))
    for word in ("patterned", "textured", "decorated"):
        add(word, Atom("PATTERN", "patterned", word))
    # positions
    for phrase in ("left", "left side", "left hand", "left hand side", "left half", "leftmost", "left column"):
        add(phrase, Atom("REGION", "left side", phrase))
    for phrase in ("right", "right side", "right hand", "right hand side", "right half", "rightmost",
                   "right column"):
        add(phrase, Atom("REGION", "right side", phrase))
    for phrase in ("top", "upper", "top side", "top half", "top row", "upper half", "topmost", "up top"):
        add(phrase, Atom("REGION", "top side", phrase))
    for phrase in ("bottom", "lower", "bottom side", "bottom half", "bottom row", "lower half", "bottommost"):
        add(phrase, Atom("REGION", "bottom side", phrase))
    for phrase in ("centre", "center", "middle", "central", "centred", "centered", "middle row",
                   "middle column", "center row", "centre row"):
        add(phrase, Atom("REGION", "centre", phrase))
    for phrase in ("corner", "corners", "a corner"):
        add(phrase, Atom("REGION", "corner", phrase))
    # scene words
    for word in ("background", "backdrop", "back ground", "bg", "backgrounds"):
        add(word, Atom("BG", None, word))
    for phrase in ("tiled", "tiles", "tile", "grid", "gridded", "floor", "tiled floor", "grid floor", "tiling",
                   "grid lines", "gridlines"):
        add(phrase, Atom("BACKDROP", "tiled", phrase))
    for phrase in ("gradient", "sky", "fading", "fade", "faded", "graded", "gradient sky", "sky gradient"):
        add(phrase, Atom("BACKDROP", "gradient", phrase))
    for phrase in ("dark", "darkened", "night", "nighttime", "night time", "dim", "dimly lit", "gloomy",
                   "evening", "at night", "dusky", "dusk"):
        add(phrase, Atom("LIGHT", "dark", phrase))
    for phrase in ("bright", "light", "lit", "well lit", "day", "daytime", "day time", "daylight", "sunny",
                   "brightly lit", "bright daylight"):
        add(phrase, Atom("LIGHT", "bright", phrase))
    for word in ("frame", "framed", "border", "bordered", "borders", "frames", "edge", "edges", "outline box"):
        add(word, Atom("FRAME", True, word))
    # logic and quantities
    add("and", Atom("AND", None, "and"))
    add("or", Atom("OR", None, "or"))
    for word in ("all", "every", "each", "both", "all of"):
        add(word, Atom("ALL", None, word))
    for word in ("it", "its", "it's"):
        add(word, Atom("IT", "it", word))
    for word in ("they", "them", "their", "these shapes", "those shapes"):
        add(word, Atom("IT", "they", word))
    for word in ("the", "this", "that", "these", "those"):
        add(word, Atom("DEF", None, word))
    for word in ("same", "identical", "matching", "alike"):
        add(word, Atom("SAME", True, word))
    for word in ("different", "differing", "distinct", "various"):
        add(word, Atom("SAME", False, word))
    for word in ("empty", "nothing", "blank", "vacant", "unoccupied"):
        add(word, Atom("EMPTY", None, word))
    numbers = {"zero": 0, "none": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
               "eight": 8, "nine": 9, "ten": 10, "single": 1, "a single": 1, "pair": 2, "a pair": 2,
               "a couple": 2, "couple": 2}
    for word, value in numbers.items():
        add(word, Atom("NUMBER", value, word))
    for digit in range(11):
        add(str(digit), Atom("NUMBER", digit, str(digit)))
    for phrase in ("only", "exactly", "just", "precisely"):
        add(phrase, Atom("CMP", "==", phrase))
    for phrase in ("more than", "over", "greater than"):
        add(phrase, Atom("CMP", ">", phrase))
    for phrase in ("at least", "no fewer than", "no less than"):
        add(phrase, Atom("CMP", ">=", phrase))
    for phrase in ("fewer than", "less than", "under"):
        add(phrase, Atom("CMP", "<", phrase))
    for phrase in ("at most", "no more than"):
        add(phrase, Atom("CMP", "<=", phrase))
    for phrase in ("several", "multiple", "many", "lots of", "a lot of", "plenty of", "some"):
        add(phrase, Atom("CMP", ">=", phrase), Atom("NUMBER", 2, phrase))
    return lex


_MAX_PHRASE = 4
_CONTRACTIONS = (
    (r"\bwhat's\b", "what is"), (r"\bwhere's\b", "where is"), (r"\bthere's\b", "there is"),
    (r"\bit's\b", "it is"), (r"\bthat's\b", "that is"), (r"\bhow's\b", "how is"),
    (r"\bisn't\b", "is not"), (r"\baren't\b", "are not"), (r"\bdoesn't\b", "does not"),
    (r"\bdon't\b", "do not"), (r"\bcan't\b", "can not"), (r"\bcannot\b", "can not"),
    (r"\bwasn't\b", "was not"), (r"\bweren't\b", "were not"), (r"\bi'm\b", "i am"),
    (r"(\w)'s\b", r"\1 's"),
)


def words(text: str) -> list[str]:
    """Lower-cased words of a question; hyphens split words, other punctuation is dropped."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text.replace("-", " "))
    return [w.strip("'") if w != "'s" else w for w in text.split() if w.strip("'") or w == "'s"]


def lex(text: str) -> list[Atom]:
    """Atoms of a question, longest phrases first; fillers dropped, unknown words kept as ``UNKNOWN``."""
    table = lexicon()
    tokens = words(text)
    atoms: list[Atom] = []
    i = 0
    while i < len(tokens):
        for length in range(min(_MAX_PHRASE, len(tokens) - i), 0, -1):
            phrase = tuple(tokens[i : i + length])
            if phrase in table:
                atoms.extend(table[phrase])
                i += length
                break
        else:
            atoms.append(Atom("UNKNOWN", tokens[i], tokens[i]))
            i += 1
    return _resolve(atoms)


def _resolve(atoms: list[Atom]) -> list[Atom]:
    """Context rules: colour modifiers, the two meanings of "one", of "light/dark" and of "shape"."""
    out: list[Atom] = []
    for k, atom in enumerate(atoms):
        nxt = atoms[k + 1] if k + 1 < len(atoms) else None
        prev = out[-1] if out else None
        if atom.kind in ("MOD", "LIGHT") and nxt is not None and nxt.kind == "COLOUR":
            continue  # "light blue", "dark green": the colour is what counts
        if atom.kind == "MOD":
            # "bright"/"light"/"dark" on their own talk about the lighting
            if atom.value in ("bright", "light"):
                atom = Atom("LIGHT", "bright", atom.text)
            elif atom.value == "dark":
                atom = Atom("LIGHT", "dark", atom.text)
            else:
                atom = Atom("UNKNOWN", atom.text, atom.text)
        if atom.kind == "ONE":
            if nxt is not None and nxt.kind in ("SHAPE", "NOUN", "COLOUR", "SIZE", "PATTERN", "EXTREME"):
                atom = Atom("NUMBER", 1, "one")
            elif prev is not None and prev.kind in ("COLOUR", "SIZE", "PATTERN", "EXTREME", "DEF", "WH", "SHAPE"):
                atom = Atom("NOUN", None, "one")
            else:
                atom = Atom("NUMBER", 1, "one")
        out.append(atom)
    return _attribute_nouns(out)


def _attribute_nouns(atoms: list[Atom]) -> list[Atom]:
    """'what shape ...', 'which object ...', 'what kind of ...': the noun names the asked attribute."""
    out = list(atoms)
    for k, atom in enumerate(out):
        if atom.kind == "ATTR" and atom.value == "kind":
            nxt = out[k + 1] if k + 1 < len(out) else None
            if nxt is not None and nxt.kind == "ATTR":
                out[k] = Atom("DEF", None, atom.text)  # "what kind of pattern" = "what pattern"
            elif nxt is not None and nxt.kind == "BG":
                out[k] = Atom("ATTR", "backdrop", atom.text)
            elif nxt is not None and nxt.kind == "NOUN":
                out[k] = Atom("ATTR", "shape", atom.text)
                out[k + 1] = Atom("DEF", None, nxt.text)
            else:
                out[k] = Atom("ATTR", "shape", atom.text)
    for k, atom in enumerate(out):
        if atom.kind == "WH" and atom.value in ("what", "which"):
            j = k + 1
            while j < len(out) and out[j].kind in ("DEF", "AUX"):
                j += 1
            if j < len(out) and out[j].kind == "NOUN" and out[j].text not in ("anything", "something"):
                out[j] = Atom("ATTR", "shape", out[j].text)
            break
    return out


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
            chosen = [o for o, r in zip(chosen, rank) if r == best]
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
        return {"==": k == self.n, ">": k > self.n, ">=": k >= self.n, "<": k < self.n, "<=": k <= self.n}[self.op]


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
    attribute: Literal["background", "backdrop", "lighting", "description"]


@dataclass(frozen=True)
class SceneCheck:
    scene: SceneFilter


@dataclass(frozen=True)
class SceneChoice:
    attribute: Literal["background", "backdrop", "lighting"]
    options: tuple[tuple[str, str], ...]  # (label as said, canonical value)


Query = (
    Unknown | Count | Exists | AttrOpen | AttrCheck | AttrChoice | SameCheck | Describe | SceneOpen | SceneCheck
    | SceneChoice
)


# --- parsing -------------------------------------------------------------------------------------------


@dataclass
class _State:
    atoms: list[Atom]
    scene: dict = field(default_factory=dict)

    def kinds(self) -> set[str]:
        return {a.kind for a in self.atoms}


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
    has_object = bool(kinds & {"SHAPE", "NOUN", "EXTREME", "SIZE", "NUMBER", "EMPTY"}) or (
        "REGION" in kinds
    )
    consumed: set[int] = set()
    backgrounds: set[str] = set()
    backdrops: set[str] = set()
    lightings: set[str] = set()
    frame: bool | None = None
    impossible_backdrop = False
    scene_choice: list[tuple[str, str, str]] = []  # (attribute, label, value)

    bg_index = next((k for k, a in enumerate(atoms) if a.kind == "BG"), None)
    bg_subject = False
    if bg_index is not None:
        consumed.add(bg_index)
        k = bg_index - 1
        while k >= 0 and atoms[k].kind in ("COLOUR", "BACKDROP", "PATTERN", "LIGHT", "DEF", "OR"):
            consumed.add(k)
            k -= 1
        bg_subject = not has_object
        if bg_subject:
            for k, atom in enumerate(atoms):
                if atom.kind in ("COLOUR", "BACKDROP", "PATTERN", "LIGHT", "OR"):
                    consumed.add(k)
        for k in sorted(consumed):
            atom = atoms[k]
            if atom.kind == "COLOUR":
                backgrounds.add(atom.value)  # type: ignore[arg-type]
                scene_choice.append(("background", atom.text, atom.value))  # type: ignore[arg-type]
            elif atom.kind == "BACKDROP":
                backdrops.add(atom.value)  # type: ignore[arg-type]
                scene_choice.append(("backdrop", atom.text, atom.value))  # type: ignore[arg-type]
            elif atom.kind == "PATTERN":
                value = {"plain": "plain", "checkered": "tiled"}.get(atom.value)  # type: ignore[arg-type]
                if value is None:
                    impossible_backdrop = True
                else:
                    backdrops.add(value)
                    scene_choice.append(("backdrop", atom.text, value))
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
        bg_index is not None or lightings or backdrops or frame is not None or impossible_backdrop or attr == "time"
    )
    if object_content or not scene_words:
        return None, rest, scene
    if has_wh:
        if wh in ("what", "which"):
            if attr == "time" or (lightings and attr is None):
                return SceneOpen("lighting"), rest, scene
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
        elif a.kind == "ATTR" and a.value == "pattern":
            patterns.update(PATTERNED)  # "does the star have a pattern?"
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
    return atom.kind in _OBJECT_KINDS or atom.kind in ("OR", "CMP") or (atom.kind == "ATTR" and atom.value == "pattern")


def _check(subject_atoms: list[Atom], predicate: list[Atom], every: bool, scene: SceneFilter) -> Query:
    subject = _filter(subject_atoms)
    if any(a.kind in ("NUMBER", "CMP") for a in predicate):
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
        return {"left side": "on the left", "right side": "on the right", "top side": "at the top",
                "bottom side": "at the bottom", "centre": "in the centre", "corner": "in a corner"}[atom.value]
    if atom.kind == "SHAPE":
        return f"a {atom.value}"
    return str(atom.value)


def _exists(content: list[Atom], scene: SceneFilter) -> Query:
    content = [a for a in content if a.kind in _OBJECT_KINDS or a.kind in ("AND", "OR", "CMP")
               or (a.kind == "ATTR" and a.value == "pattern")]
    groups: list[list[Atom]] = [[]]
    joiners: list[str] = []
    for atom in content:
        if atom.kind in ("AND", "OR"):
            groups.append([])
            joiners.append(atom.kind.lower())
        else:
            groups[-1].append(atom)
    # "a red or a blue star": a group without a noun borrows the shapes of the next group
    merged: list[list[Atom]] = []
    for k, group in enumerate(groups):
        if not group:
            continue
        if not any(a.kind in _NOUN_KINDS for a in group) and k + 1 < len(groups):
            group = group + [a for a in groups[k + 1] if a.kind == "SHAPE"]
        merged.append(group)
    if not merged:
        return Unknown("nothing to look for")
    combine = "or" if "or" in joiners else "and"
    parts = tuple((_filter(g), _count_test(g)) for g in merged)
    return Exists(parts, combine, scene)  # type: ignore[arg-type]
