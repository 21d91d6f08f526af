"""The words of the oracle: a phrase lexicon that turns a question into atoms.

``lex("what colour is the big star?")`` gives atoms such as ``WH what``, ``ATTR colour``, ``DEF``,
``SIZE large``, ``SHAPE star``: synonyms, plurals and multi-word phrases ("top left", "polka dots",
"how many") are read longest first, filler words are dropped, and unknown words are kept as ``UNKNOWN`` so the
parser can refuse the question. A few context rules settle words with two meanings ("light blue" vs "is it
light?", "the red one" vs "one star", "what shape" vs "the shape").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from chatir.world.vocab import COLOUR_WORDS, EXTRA_COLOUR_WORDS, PLURALS

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
    for phrase in ("lighting", "brightness", "illumination", "light level"):
        add(phrase, Atom("ATTR", "lighting", phrase))
    for word in ("shape", "shapes"):
        add(word, Atom("NOUN", "shapeword", word))
    for word in (
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
    ):
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
    plural_extra = {
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
    for phrase in (
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
    ):
        add(phrase, Atom("SIZE", "medium", phrase))
    for word in ("large", "big", "huge", "giant", "enormous", "largish", "biggish"):
        add(word, Atom("SIZE", "large", word))
    for word in ("largest", "biggest"):
        add(word, Atom("EXTREME", "large", word))
    for word in ("smallest", "tiniest"):
        add(word, Atom("EXTREME", "small", word))
    # patterns
    pattern_words = {
        "plain": [
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
        ],
        "striped": ["striped", "stripes", "stripe", "stripy", "stripey", "lined", "lines", "streaked"],
        "dotted": [
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
        ],
        "checkered": [
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
        ],
    }
    for pattern, words in pattern_words.items():
        for word in words:
            add(word, Atom("PATTERN", pattern, word))
    for word in ("patterned", "textured", "decorated"):
        add(word, Atom("PATTERN", "patterned", word))
    # positions
    for phrase in (
        "left",
        "left side",
        "left hand",
        "left hand side",
        "left half",
        "leftmost",
        "left column",
    ):
        add(phrase, Atom("REGION", "left side", phrase))
    for phrase in (
        "right",
        "right side",
        "right hand",
        "right hand side",
        "right half",
        "rightmost",
        "right column",
    ):
        add(phrase, Atom("REGION", "right side", phrase))
    for phrase in ("top", "upper", "top side", "top half", "top row", "upper half", "topmost", "up top"):
        add(phrase, Atom("REGION", "top side", phrase))
    for phrase in ("bottom", "lower", "bottom side", "bottom half", "bottom row", "lower half", "bottommost"):
        add(phrase, Atom("REGION", "bottom side", phrase))
    for phrase in (
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
    ):
        add(phrase, Atom("REGION", "centre", phrase))
    for phrase in ("corner", "corners", "a corner"):
        add(phrase, Atom("REGION", "corner", phrase))
    # scene words
    for word in ("background", "backdrop", "back ground", "bg", "backgrounds"):
        add(word, Atom("BG", None, word))
    for phrase in (
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
    ):
        add(phrase, Atom("BACKDROP", "tiled", phrase))
    for phrase in ("gradient", "sky", "fading", "fade", "faded", "graded", "gradient sky", "sky gradient"):
        add(phrase, Atom("BACKDROP", "gradient", phrase))
    for phrase in (
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
    ):
        add(phrase, Atom("LIGHT", "dark", phrase))
    for phrase in (
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
    ):
        add(phrase, Atom("LIGHT", "bright", phrase))
    for word in (
        "frame",
        "framed",
        "border",
        "bordered",
        "borders",
        "frames",
        "edge",
        "edges",
        "outline box",
    ):
        add(word, Atom("FRAME", True, word))
    # fillers of first messages ("i'm looking for the one with ...")
    for phrase in (
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
    ):
        add(phrase)
    add("a single colour", Atom("PATTERN", "plain", "a single colour"))
    add("a single color", Atom("PATTERN", "plain", "a single color"))
    # logic and quantities
    for phrase in (
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
    ):
        add(phrase, Atom("WITH", None, phrase))
    for phrase in ("alone", "on its own", "by itself", "nothing else", "on their own", "by themselves"):
        add(phrase, Atom("ALONE", None, phrase))
    for word in ("other", "others", "more"):
        add(word, Atom("OTHER", None, word))
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
    numbers = {
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
    }
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
