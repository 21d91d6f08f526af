"""The words of the oracle: a phrase lexicon that turns a question into atoms.

``lex("what colour is the big star?")`` gives atoms such as ``WH what``, ``ATTR colour``, ``DEF``,
``SIZE large``, ``SHAPE star``: synonyms, plurals and multi-word phrases ("top left", "polka dots",
"how many") are read longest first, filler words are dropped, and unknown words are kept as ``UNKNOWN`` so the
parser can refuse the question. A few context rules settle words with two meanings ("light blue" vs "is it
light?", "the red one" vs "one star", "what shape" vs "the shape").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

from world.vocab import COLOUR_WORDS, EXTRA_COLOUR_WORDS, PLURALS

# --- atoms ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    kind: str
    value: object = None
    text: str = ""
    start: int = -1  # span of words in the question (fillers between atoms make them non-adjacent)
    end: int = -1


def _as(atom: Atom, kind: str, value: object = None) -> Atom:
    return replace(atom, kind=kind, value=value)


_FILLER = """
a an any in on at of to with by for from into inside within around please picture pictures image images photo
photos photograph photographs scene drawing painting you i me we us tell know see seen visible shown show shows
showing contain contains containing include includes including there here present appear appears exist exists
's look looks like located placed positioned situated sitting lying drawn painted coloured colored filled made
shaped sized about so well ok okay also else not no do does did be being been am is are was were has have having
had will would could can should may might actually really currently overall whole entire total altogether
somewhere anywhere taken shot quite very rather fairly somewhat mostly
""".split()  # noqa: SIM905 - a word list reads best as text
_AUX = {"is", "are", "was", "were", "does", "do", "did", "has", "have", "can", "could", "would", "will", "am"}


class _Group(NamedTuple):
    """A row of the lexicon table: every phrase gets the same atoms, each with the phrase as its text."""

    phrases: tuple[str, ...]
    senses: tuple[tuple[str, object], ...] = ()  # (kind, value) of each atom; none for a filler
    overwrite: bool = True  # False: an earlier meaning of the phrase is kept (colour modifiers)


def _group(phrases: Iterable[str], *senses: tuple[str, object]) -> _Group:
    return _Group(tuple(phrases), senses)


def _one_each(kind: str, values: Mapping[str, object]) -> tuple[_Group, ...]:
    """One group per phrase, for words whose value differs from word to word (numbers, aux verbs)."""
    return tuple(_group((phrase,), (kind, value)) for phrase, value in values.items())


_SHAPE_SYNONYMS = {
    "circle": ("circle", "disc", "disk", "round", "circular", "round shape", "ball", "dot shape"),
    "square": ("square", "box", "rectangle", "rectangular", "block"),
    "triangle": ("triangle", "triangular"),
    "star": ("star", "starry", "star shaped"),
    "heart": ("heart", "heart shaped"),
    "cross": ("cross", "plus", "plus sign", "plus shape", "cross shaped"),
    "ring": ("ring", "donut", "doughnut", "hoop", "circle outline", "hollow circle", "ring shaped"),
    "diamond": ("diamond", "rhombus", "lozenge", "diamond shaped"),
}
_SHAPE_PLURALS = {  # beyond world.vocab.PLURALS, which has the plural of each shape's own name
    "box": "boxes",
    "disc": "discs",
    "disk": "disks",
    "rectangle": "rectangles",
    "block": "blocks",
    "plus": "pluses",
    "plus sign": "plus signs",
    "donut": "donuts",
    "doughnut": "doughnuts",
    "hoop": "hoops",
    "rhombus": "rhombuses",
    "lozenge": "lozenges",
    "ball": "balls",
}
_PATTERN_SYNONYMS = {
    "plain": (
        "plain",
        "solid",
        "unpatterned",
        "uniform",
        "flat",
        "single colour",
        "single color",
        "one colour",
        "one color",
        "no pattern",
    ),
    "striped": ("striped", "stripes", "stripe", "stripy", "stripey", "lined", "lines", "streaked"),
    "dotted": (
        "dotted",
        "dots",
        "dot",
        "polka dot",
        "polka dots",
        "polka dotted",
        "spotted",
        "spots",
        "spotty",
        "dotty",
        "speckled",
    ),
    "checkered": (
        "checkered",
        "chequered",
        "checked",
        "checks",
        "checker",
        "checkerboard",
        "chessboard",
        "checkers",
        "plaid",
        "chequerboard",
        "checkered pattern",
    ),
}
_NUMBERS: dict[str, object] = {
    "zero": 0,
    "none": 0,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "single": 1,
    "a single": 1,
    "pair": 2,
    "a pair": 2,
    "a couple": 2,
    "couple": 2,
    **{str(digit): digit for digit in range(11)},
}

# The table, in order: a later row overwrites an earlier meaning of the same phrase ("light" the modifier,
# then "light" the lighting), so the order is part of the meaning.
_TABLE: tuple[_Group, ...] = (
    _group(_FILLER),
    *_one_each("AUX", {word: word for word in _AUX}),
    # question words
    _group(("what",), ("WH", "what")),
    _group(("which",), ("WH", "which")),
    _group(("where",), ("WH", "where")),
    _group(("how many", "how much", "number", "count", "what number"), ("WH", "howmany")),
    _group(("how big", "how large", "how small", "how tiny", "how huge"), ("WH", "what"), ("ATTR", "size")),
    # attribute names
    _group(("colour", "color", "colours", "colors", "hue", "shade"), ("ATTR", "colour")),
    _group(("size", "sizes"), ("ATTR", "size")),
    _group(("pattern", "patterns", "texture", "textures", "design", "fill", "surface"), ("ATTR", "pattern")),
    _group(("position", "location", "place", "side", "part", "area", "spot"), ("ATTR", "position")),
    _group(("kind", "type", "sort", "kinds", "types", "sorts", "style"), ("ATTR", "kind")),
    _group(("time", "time of day", "time of the day"), ("ATTR", "time")),
    _group(("lighting", "brightness", "illumination", "light level"), ("ATTR", "lighting")),
    _group(("shape", "shapes"), ("NOUN", "shapeword")),
    _group(
        (
            "object",
            "objects",
            "thing",
            "things",
            "item",
            "items",
            "figure",
            "figures",
            "element",
            "elements",
            "symbol",
            "symbols",
            "icon",
            "icons",
            "form",
            "forms",
            "ones",
            "anything",
            "something",
            "everything",
        ),
        ("NOUN", None),
    ),
    _group(("one",), ("ONE", None)),
    # shapes: the words, the shape's plural, then the plurals of its synonyms
    *(
        _group(
            (*words, PLURALS[shape], *(_SHAPE_PLURALS[word] for word in words if word in _SHAPE_PLURALS)),
            ("SHAPE", shape),
        )
        for shape, words in _SHAPE_SYNONYMS.items()
    ),
    # colours (modifiers before a colour are dropped later)
    *(_group(words, ("COLOUR", colour)) for colour, words in COLOUR_WORDS.items()),
    *_one_each("COLOUR", EXTRA_COLOUR_WORDS),
    *(
        _Group((word,), (("MOD", word),), overwrite=False)
        for word in ("pale", "deep", "vivid", "bright", "light", "dark", "dull", "soft", "pastel", "neon")
    ),
    # sizes
    _group(("small", "tiny", "little", "smallish", "mini", "miniature"), ("SIZE", "small")),
    _group(
        (
            "medium",
            "medium sized",
            "medium size",
            "mid sized",
            "mid size",
            "middle sized",
            "average sized",
            "average size",
            "moderate",
            "moderately sized",
            "normal sized",
        ),
        ("SIZE", "medium"),
    ),
    _group(("large", "big", "huge", "giant", "enormous", "largish", "biggish"), ("SIZE", "large")),
    _group(("largest", "biggest"), ("EXTREME", "large")),
    _group(("smallest", "tiniest"), ("EXTREME", "small")),
    # patterns
    *(_group(words, ("PATTERN", pattern)) for pattern, words in _PATTERN_SYNONYMS.items()),
    _group(("patterned", "textured", "decorated"), ("PATTERN", "patterned")),
    # positions
    _group(
        ("left", "left side", "left hand", "left hand side", "left half", "leftmost", "left column"),
        ("REGION", "left side"),
    ),
    _group(
        ("right", "right side", "right hand", "right hand side", "right half", "rightmost", "right column"),
        ("REGION", "right side"),
    ),
    _group(
        ("top", "upper", "top side", "top half", "top row", "upper half", "topmost", "up top"),
        ("REGION", "top side"),
    ),
    _group(
        ("bottom", "lower", "bottom side", "bottom half", "bottom row", "lower half", "bottommost"),
        ("REGION", "bottom side"),
    ),
    _group(
        (
            "centre",
            "center",
            "middle",
            "central",
            "centred",
            "centered",
            "middle row",
            "middle column",
            "center row",
            "centre row",
        ),
        ("REGION", "centre"),
    ),
    _group(("corner", "corners", "a corner"), ("REGION", "corner")),
    # scene words
    _group(("background", "backdrop", "back ground", "bg", "backgrounds"), ("BG", None)),
    _group(
        (
            "tiled",
            "tiles",
            "tile",
            "grid",
            "gridded",
            "floor",
            "tiled floor",
            "grid floor",
            "tiling",
            "grid lines",
            "gridlines",
        ),
        ("BACKDROP", "tiled"),
    ),
    _group(
        ("gradient", "sky", "fading", "fade", "faded", "graded", "gradient sky", "sky gradient"),
        ("BACKDROP", "gradient"),
    ),
    _group(
        (
            "dark",
            "darkened",
            "night",
            "nighttime",
            "night time",
            "dim",
            "dimly lit",
            "gloomy",
            "evening",
            "at night",
            "dusky",
            "dusk",
            "dim light",
            "low light",
            "poor light",
            "in the dark",
            "dark picture",
            "dark image",
            "dark photo",
        ),
        ("LIGHT", "dark"),
    ),
    _group(
        (
            "bright",
            "light",
            "lit",
            "well lit",
            "day",
            "daytime",
            "day time",
            "daylight",
            "sunny",
            "brightly lit",
            "bright daylight",
            "bright light",
            "good light",
            "full light",
        ),
        ("LIGHT", "bright"),
    ),
    _group(
        ("frame", "framed", "border", "bordered", "borders", "frames", "edge", "edges", "outline box"),
        ("FRAME", True),
    ),
    # fillers of first messages ("i'm looking for the one with ...")
    _group(
        (
            "looking",
            "find",
            "search",
            "searching",
            "want",
            "need",
            "against",
            "near",
            "nearby",
            "in front of",
            "the one with",
            "one with",
            "towards",
            "toward",
        )
    ),
    _group(("a single colour", "a single color"), ("PATTERN", "plain")),
    # logic and quantities
    _group(
        (
            "with",
            "next to",
            "beside",
            "alongside",
            "among",
            "amongst",
            "along with",
            "together with",
            "as well as",
            "accompanied by",
        ),
        ("WITH", None),
    ),
    _group(
        ("alone", "on its own", "by itself", "nothing else", "on their own", "by themselves"), ("ALONE", None)
    ),
    _group(("other", "others", "more"), ("OTHER", None)),
    _group(("and",), ("AND", None)),
    _group(("or",), ("OR", None)),
    _group(("all", "every", "each", "both", "all of"), ("ALL", None)),
    _group(("it", "its", "it's"), ("IT", "it")),
    _group(("they", "them", "their", "these shapes", "those shapes"), ("IT", "they")),
    _group(("the", "this", "that", "these", "those"), ("DEF", None)),
    _group(("same", "identical", "matching", "alike"), ("SAME", True)),
    _group(("different", "differing", "distinct", "various"), ("SAME", False)),
    _group(("empty", "nothing", "blank", "vacant", "unoccupied"), ("EMPTY", None)),
    *_one_each("NUMBER", _NUMBERS),
    _group(("only", "exactly", "just", "precisely"), ("CMP", "==")),
    _group(("more than", "over", "greater than"), ("CMP", ">")),
    _group(("at least", "no fewer than", "no less than"), ("CMP", ">=")),
    _group(("fewer than", "less than", "under"), ("CMP", "<")),
    _group(("at most", "no more than"), ("CMP", "<=")),
    _group(
        ("several", "multiple", "many", "lots of", "a lot of", "plenty of", "some"),
        ("CMP", ">="),
        ("NUMBER", 2),
    ),
)


@lru_cache(maxsize=1)
def lexicon() -> dict[tuple[str, ...], tuple[Atom, ...]]:
    """Phrase (tuple of words) -> atoms. Longest phrases win when the question is read."""
    lex: dict[tuple[str, ...], tuple[Atom, ...]] = {}
    for group in _TABLE:
        for phrase in group.phrases:
            key = tuple(phrase.replace("-", " ").split())  # "snow-white": hyphens split words, as in `words`
            atoms = tuple(Atom(kind, value, phrase) for kind, value in group.senses)
            if group.overwrite:
                lex[key] = atoms
            else:
                lex.setdefault(key, atoms)
    return lex


_MAX_PHRASE = 4
_CONTRACTIONS = (
    (r"\bwhat's\b", "what is"),
    (r"\bwhere's\b", "where is"),
    (r"\bthere's\b", "there is"),
    (r"\bit's\b", "it is"),
    (r"\bthat's\b", "that is"),
    (r"\bhow's\b", "how is"),
    (r"\bisn't\b", "is not"),
    (r"\baren't\b", "are not"),
    (r"\bdoesn't\b", "does not"),
    (r"\bdon't\b", "do not"),
    (r"\bcan't\b", "can not"),
    (r"\bcannot\b", "can not"),
    (r"\bwasn't\b", "was not"),
    (r"\bweren't\b", "were not"),
    (r"\bi'm\b", "i am"),
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
                atoms.extend(replace(a, start=i, end=i + length) for a in table[phrase])
                i += length
                break
        else:
            atoms.append(Atom("UNKNOWN", tokens[i], tokens[i], i, i + 1))
            i += 1
    return _resolve(atoms)


def _resolve(atoms: list[Atom]) -> list[Atom]:
    """Context rules: colour modifiers, the two meanings of "one", of "light/dark" and of "shape"."""
    out: list[Atom] = []
    for k, atom in enumerate(atoms):
        nxt = atoms[k + 1] if k + 1 < len(atoms) else None
        prev = out[-1] if out else None
        if (
            atom.kind in ("MOD", "LIGHT")
            and nxt is not None
            and nxt.kind == "COLOUR"
            and atom.end == nxt.start
        ):
            continue  # "light blue", "dark green": the colour is what counts
        if atom.kind == "MOD":
            # "bright"/"light"/"dark" on their own talk about the lighting
            if atom.value in ("bright", "light"):
                atom = _as(atom, "LIGHT", "bright")
            elif atom.value == "dark":
                atom = _as(atom, "LIGHT", "dark")
            else:
                atom = _as(atom, "UNKNOWN", atom.text)
        if atom.kind == "ONE":
            if nxt is not None and nxt.kind in ("SHAPE", "NOUN", "COLOUR", "SIZE", "PATTERN", "EXTREME"):
                atom = _as(atom, "NUMBER", 1)
            elif prev is not None and prev.kind in (
                "COLOUR",
                "SIZE",
                "PATTERN",
                "EXTREME",
                "DEF",
                "WH",
                "SHAPE",
            ):
                atom = _as(atom, "NOUN")
            else:
                atom = _as(atom, "NUMBER", 1)
        out.append(atom)
    return _attribute_nouns(out)


def _attribute_nouns(atoms: list[Atom]) -> list[Atom]:
    """'what shape ...', 'which object ...', 'what kind of ...': the noun names the asked attribute."""
    out = list(atoms)
    for k, atom in enumerate(out):
        if atom.kind == "ATTR" and atom.value == "kind":
            nxt = out[k + 1] if k + 1 < len(out) else None
            if nxt is not None and nxt.kind == "ATTR":
                out[k] = _as(atom, "DEF")  # "what kind of pattern" = "what pattern"
            elif nxt is not None and nxt.kind == "BG":
                out[k] = _as(atom, "ATTR", "backdrop")
            elif nxt is not None and nxt.kind == "NOUN":
                out[k] = _as(atom, "ATTR", "shape")
                out[k + 1] = _as(nxt, "DEF")
            else:
                out[k] = _as(atom, "ATTR", "shape")
    for k, atom in enumerate(out):
        if atom.kind == "WH" and atom.value in ("what", "which"):
            j = k + 1
            while j < len(out) and out[j].kind in ("DEF", "AUX"):
                j += 1
            if j < len(out) and out[j].kind == "NOUN" and out[j].text not in ("anything", "something"):
                out[j] = _as(out[j], "ATTR", "shape")
            break
    return out
