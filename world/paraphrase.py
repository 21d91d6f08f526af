"""Training-only surface variety: free descriptions of a scene and other wordings of captions and answers.

People do not talk like the world's caption templates. They say "ball" for a circle, "donut" for a ring,
"tiles" for a tiled floor, "olive", "mauve" or "beige"; they put the colour after the shape, mention what is
*not* there ("no circles", "nothing in the middle") and answer "nope" or "2". This module gives the training
stream (``training.world_stream``) that variety:

- :func:`free_description` -- a partial description of a scene in its own syntax and a wider lexicon, with the
  claims it makes (the same :class:`~world.query.Exists` as a template caption, so a hard negative can be
  checked against it);
- :func:`reword` -- another wording of any caption or answer text (word-level synonyms, yes/no/number forms).

The world's generator, captions and oracle do not use any of it: measurements keep their own language. The
tables below are data; edit them to teach the starter a word.
"""

from __future__ import annotations

import random
import re
from typing import Final

from world.language import Caption
from world.query import CountTest, Exists, ObjectFilter, SceneFilter
from world.scene import Scene, WorldObject
from world.vocab import COLOURS, NUMBER_WORDS, POSITIONS, REGIONS, SHAPES

# --- the wider lexicon (training only) ----------------------------------------------------------------
COLOUR_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "red": ("red", "crimson", "scarlet", "cherry", "maroon", "ruby", "brick red", "tomato red", "bright red"),
    "orange": ("orange", "tangerine", "amber", "pumpkin", "apricot", "orangey", "burnt orange"),
    "yellow": ("yellow", "golden", "gold", "lemon", "mustard", "sunflower yellow", "canary"),
    "green": ("green", "emerald", "lime", "olive", "forest green", "grass green", "jade", "kelly green"),
    "blue": ("blue", "azure", "navy", "cobalt", "royal blue", "sapphire", "ultramarine", "dark blue"),
    "purple": ("purple", "violet", "lilac", "lavender", "mauve", "plum", "grape", "amethyst"),
    "pink": ("pink", "rose", "magenta", "fuchsia", "hot pink", "bubblegum", "salmon pink", "rosy"),
    "brown": ("brown", "chocolate", "tan", "coffee", "chestnut", "mocha", "rust brown", "walnut"),
    "white": ("white", "snow-white", "ivory", "off-white", "milky", "pearl", "chalk white"),
    "black": ("black", "jet-black", "ebony", "coal black", "inky", "pitch black", "onyx"),
}
BACKGROUND_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "white": ("white", "off-white", "ivory", "pale", "blank white", "cream white"),
    "gray": ("gray", "grey", "silver", "slate", "ash", "mid grey", "concrete grey"),
    "black": ("black", "dark", "charcoal", "jet-black", "night black"),
    "blue": ("blue", "sky blue", "light blue", "baby blue", "powder blue", "cornflower"),
    "green": ("green", "sage", "mint", "light green", "pastel green", "moss green"),
    "yellow": ("yellow", "pale yellow", "beige", "cream", "sand", "butter yellow", "straw"),
    "pink": ("pink", "light pink", "blush", "salmon", "pastel pink", "rose"),
    "purple": ("purple", "lilac", "lavender", "mauve", "light purple", "heather"),
}
SHAPE_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "circle": ("circle", "disc", "ball", "round shape", "dot", "orb", "round thing", "sphere", "blob"),
    "square": ("square", "box", "block", "cube", "square shape", "tile"),
    "triangle": ("triangle", "pyramid", "triangular shape", "wedge", "arrowhead"),
    "star": ("star", "five-pointed star", "star shape", "starburst", "little star"),
    "heart": ("heart", "love heart", "valentine heart", "heart shape"),
    "cross": ("cross", "plus sign", "plus", "plus symbol", "cross shape", "red-cross shape"),
    "ring": ("ring", "donut", "doughnut", "hoop", "bagel", "circle outline", "loop", "o shape"),
    "diamond": ("diamond", "rhombus", "lozenge", "kite", "diamond shape", "tilted square"),
}
SIZE_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "small": ("small", "tiny", "little", "mini", "smallish", "teeny", "wee"),
    "medium": ("medium", "mid-sized", "medium-sized", "average-sized", "middle-sized", "normal-sized"),
    "large": ("large", "big", "huge", "giant", "massive", "enormous", "oversized", "biggish"),
}
PATTERN_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "plain": ("plain", "solid", "flat", "single-colour", "unpatterned", "uniform"),
    "striped": ("striped", "stripy", "lined", "pinstriped", "zebra-striped", "streaked"),
    "dotted": ("dotted", "spotted", "polka-dot", "speckled", "dotty", "freckled"),
    "checkered": ("checkered", "checked", "chequered", "chessboard", "plaid", "gingham"),
}
PATTERN_TAILS: Final[dict[str, tuple[str, ...]]] = {
    "plain": ("with no pattern", "all one colour", "without any pattern"),
    "striped": ("with stripes", "with diagonal lines", "covered in stripes"),
    "dotted": ("with dots", "covered in spots", "with little dots", "with polka dots"),
    "checkered": ("with a chessboard pattern", "with checks", "in a check pattern", "with a grid pattern"),
}
CELL_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "top left": ("in the top left", "in the upper left", "top-left", "in the upper-left corner"),
    "top": ("at the top in the middle", "top centre", "in the upper middle", "top middle"),
    "top right": ("in the top right", "in the upper right", "top-right", "in the upper-right corner"),
    "left": ("on the left in the middle", "middle left", "at the left edge", "left of centre"),
    "centre": ("in the middle", "in the center", "dead centre", "right in the middle", "centred"),
    "right": ("on the right in the middle", "middle right", "at the right edge", "right of centre"),
    "bottom left": ("in the bottom left", "in the lower left", "bottom-left", "in the lower-left corner"),
    "bottom": ("at the bottom in the middle", "bottom centre", "in the lower middle", "bottom middle"),
    "bottom right": (
        "in the bottom right",
        "in the lower right",
        "bottom-right",
        "in the lower-right corner",
    ),
}
SIDE_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "left side": ("on the left", "on the left-hand side", "towards the left"),
    "right side": ("on the right", "on the right-hand side", "towards the right"),
    "top side": ("at the top", "near the top", "up top", "in the upper part"),
    "bottom side": ("at the bottom", "near the bottom", "down low", "in the lower part"),
    "corner": ("in a corner", "in one of the corners", "tucked in a corner"),
}
BACKDROP_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "plain": ("a flat {c} background", "a plain {c} backdrop", "a solid {c} background"),
    "tiled": ("{c} tiles", "a {c} grid", "{c} grid lines behind it", "a tiled {c} wall", "a {c} lattice"),
    "gradient": ("a {c} gradient", "a {c} ombre", "a fading {c} sky", "a shaded {c} background"),
}
DARK_FORMS: Final = ("it's dark", "dimly lit", "in low light", "quite dark", "shadowy", "at night", "murky")
BRIGHT_FORMS: Final = ("well lit", "bright", "in bright light", "brightly lit")
FRAME_FORMS: Final = (
    "with a border",
    "framed",
    "in a picture frame",
    "with an edge around it",
    "boxed in a frame",
)
NO_FRAME_FORMS: Final = ("no border", "no frame", "without a frame", "unframed")
NOUNS: Final = ("shape", "object", "thing", "item", "figure", "symbol", "icon")
NOUN_PLURALS: Final = ("shapes", "objects", "things", "items", "figures", "symbols", "icons")
OPENERS: Final = (
    "",
    "",
    "",
    "",
    "i remember ",
    "i think it had ",
    "pretty sure there's ",
    "it shows ",
    "something like ",
    "can you find ",
    "need the image with ",
    "looking for the one with ",
    "show me ",
    "i want ",
)
JOINERS: Final = (", ", " and ", "; ", ", and ", " with ", ", also ")
IDK_ANSWERS: Final = (
    "i don't know",
    "not sure",
    "no idea",
    "i can't remember",
    "can't tell",
    "i don't remember",
    "dunno",
)


def _plural(form: str) -> str:
    irregular = {"box": "boxes", "cross": "crosses", "plus": "pluses", "plus sign": "plus signs"}
    if form in irregular:
        return irregular[form]
    if form.endswith(("s", "x", "sh", "ch")):
        return form + "es"
    return form + "s"


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def _cells_phrase(obj: WorldObject, rng: random.Random) -> tuple[frozenset[str], str]:
    """Where ``obj`` is, at a level of detail a person might use: its cell, a side, or a corner."""
    options: list[tuple[frozenset[str], str]] = [
        (frozenset({obj.position}), rng.choice(CELL_FORMS[obj.position]))
    ]
    for key in ("left side", "right side", "top side", "bottom side", "corner"):
        if obj.position in REGIONS[key]:
            options.append((REGIONS[key], rng.choice(SIDE_FORMS[key])))
    return rng.choice(options)


def _object_mention(
    scene: Scene, obj: WorldObject, rng: random.Random
) -> tuple[str, ObjectFilter, CountTest]:
    """A free mention of ``obj`` ("a big olive ball up top", "the donut, lilac") and its claim."""
    use = {name for name in ("size", "pattern", "position") if rng.random() < 0.35}
    core = rng.random()
    use |= {"shape", "colour"} if core < 0.55 else ({"shape"} if core < 0.8 else {"colour"})
    cells, where = _cells_phrase(obj, rng) if "position" in use else (None, "")
    f = ObjectFilter(
        shapes=frozenset({obj.shape}) if "shape" in use else frozenset(),
        colours=frozenset({obj.colour}) if "colour" in use else frozenset(),
        sizes=frozenset({obj.size}) if "size" in use else frozenset(),
        patterns=frozenset({obj.pattern}) if "pattern" in use else frozenset(),
        cells=cells,
    )
    count = len(f.select(scene.objects))
    plural = count > 1
    colour = rng.choice(COLOUR_FORMS[obj.colour]) if "colour" in use else ""
    size = rng.choice(SIZE_FORMS[obj.size]) if "size" in use else ""
    pattern_word, pattern_tail = "", ""
    if "pattern" in use:
        if rng.random() < 0.5:
            pattern_word = rng.choice(PATTERN_FORMS[obj.pattern])
        else:
            pattern_tail = rng.choice(PATTERN_TAILS[obj.pattern])
    noun = rng.choice(SHAPE_FORMS[obj.shape]) if "shape" in use else rng.choice(NOUNS)
    if plural:
        noun = _plural(noun)
    style = rng.random()
    if colour and "shape" in use and style < 0.3:  # colour after the noun: "a star, red" / "a star in red"
        head = " ".join(w for w in (size, pattern_word, noun) if w)
        head = f"{head} in {colour}" if rng.random() < 0.5 else f"{head}, {colour}"
    else:
        head = " ".join(w for w in (size, pattern_word, colour, noun) if w)
    if plural:
        number = NUMBER_WORDS[count] if rng.random() < 0.7 else str(count)
        phrase = f"{number} {head}"
    else:
        phrase = rng.choice((f"{_article(head)} {head}", f"one {head}", f"a single {head}", f"the {head}"))
    tails = [t for t in (pattern_tail, where) if t]
    rng.shuffle(tails)
    if tails:
        phrase = " ".join([phrase, *tails])
    test = CountTest("==", count) if plural else CountTest(">=", 1)
    return phrase, f, test


def _negation(scene: Scene, rng: random.Random) -> tuple[str, ObjectFilter] | None:
    """Something that is not there: an absent shape, an absent colour or an empty cell."""
    kind = rng.choice(("shape", "shape", "colour", "cell"))
    if kind == "shape":
        absent = [s for s in SHAPES if not scene.select(shape=s)]
        if not absent:
            return None
        shape = rng.choice(absent)
        noun = rng.choice(SHAPE_FORMS[shape][:3])
        text = rng.choice(
            (
                f"no {_plural(noun)}",
                f"there's no {noun}",
                f"there isn't a {noun}",
                f"without any {_plural(noun)}",
                f"not a single {noun}",
                f"definitely no {noun}",
            )
        )
        return text, ObjectFilter(shapes=frozenset({shape}))
    if kind == "colour":
        absent = [c for c in COLOURS if not scene.select(colour=c)]
        if not absent:
            return None
        colour = rng.choice(absent)
        word = rng.choice(COLOUR_FORMS[colour][:3])
        text = rng.choice(
            (f"nothing {word}", f"no {word} {rng.choice(NOUN_PLURALS)}", f"there's no {word} in it")
        )
        return text, ObjectFilter(colours=frozenset({colour}))
    empty = [p for p in POSITIONS if not scene.select(position=p)]
    if not empty:
        return None
    cell = rng.choice(empty)
    where = rng.choice(CELL_FORMS[cell])
    text = rng.choice((f"nothing {where}", f"empty {where}", f"{where} is empty", f"no shape {where}"))
    return text, ObjectFilter(cells=frozenset({cell}))


def free_description(scene: Scene, rng: random.Random) -> Caption:
    """A partial description of ``scene`` in words and word orders the templates never use, with its claims."""
    parts: list[str] = []
    groups: list[tuple[ObjectFilter, CountTest]] = []
    claims: dict = {}
    weights = [{"small": 1.0, "medium": 2.0, "large": 3.0}[o.size] for o in scene.objects]
    first = rng.choices(scene.objects, weights=weights, k=1)[0]
    mentioned = [first]
    if len(scene.objects) > 1 and rng.random() < 0.4:
        mentioned.append(rng.choice([o for o in scene.objects if o is not first]))
    for obj in mentioned:
        text, f, test = _object_mention(scene, obj, rng)
        parts.append(text)
        groups.append((f, test))
    if rng.random() < 0.45:
        colour = rng.choice(BACKGROUND_FORMS[scene.background])
        claims["backgrounds"] = frozenset({scene.background})
        if rng.random() < 0.4:
            claims["backdrops"] = frozenset({scene.backdrop})
            parts.append(
                rng.choice(("on ", "against ", "over "))
                + rng.choice(BACKDROP_FORMS[scene.backdrop]).format(c=colour)
            )
        else:
            parts.append(
                rng.choice(
                    (
                        f"on {colour}",
                        f"{colour} background",
                        f"the background is {colour}",
                        f"{colour} backdrop",
                    )
                )
            )
    if rng.random() < 0.2:
        n = len(scene.objects)
        groups.append((ObjectFilter(), CountTest("==", n)))
        number = NUMBER_WORDS[n] if rng.random() < 0.6 else str(n)
        parts.append(
            rng.choice(("just one thing", "only one shape", "a lone shape"))
            if n == 1
            else rng.choice(
                (
                    f"{number} {rng.choice(NOUN_PLURALS)} in total",
                    f"{number} {rng.choice(NOUN_PLURALS)} altogether",
                )
            )
        )
    if rng.random() < 0.12:
        dark = scene.lighting == "dark"
        claims["lightings"] = frozenset({scene.lighting})
        parts.append(rng.choice(DARK_FORMS if dark else BRIGHT_FORMS))
    if rng.random() < 0.1:
        claims["frame"] = scene.frame
        parts.append(rng.choice(FRAME_FORMS if scene.frame else NO_FRAME_FORMS))
    if rng.random() < 0.3:
        negation = _negation(scene, rng)
        if negation is not None:
            parts.append(negation[0])
            groups.append((negation[1], CountTest("==", 0)))
    head, rest = parts[0], parts[1:]
    rng.shuffle(rest)
    text = head
    for part in rest:
        text += rng.choice(JOINERS) + part
    text = rng.choice(OPENERS) + text
    if rng.random() < 0.15:
        text = text.capitalize()
    return Caption(" ".join(text.split()), Exists(tuple(groups), "and", SceneFilter(**claims)))


# --- rewording any text -------------------------------------------------------------------------------
def _word_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for forms in (
        *COLOUR_FORMS.values(),
        *SHAPE_FORMS.values(),
        *SIZE_FORMS.values(),
        *PATTERN_FORMS.values(),
    ):
        for word in forms:
            if " " not in word:
                table.setdefault(word, forms)
    table["grey"] = table["gray"] = BACKGROUND_FORMS["gray"]
    table["centre"] = table["center"] = ("centre", "center", "middle")
    table["middle"] = ("middle", "centre", "center")
    for number, word in enumerate(NUMBER_WORDS[1:5], 1):
        table[word] = (word, str(number))
    return table


_WORDS: Final = _word_table()
_YES: Final = ("yes", "yep", "yeah", "yes it is", "correct", "that's right", "sure", "uh-huh")
_NO: Final = ("no", "nope", "not really", "no it isn't", "negative", "nah")
_THERE_IS_NO = re.compile(r"^there is no (.+)$")


def reword(text: str, rng: random.Random, rate: float = 0.5) -> str:
    """Another wording of a caption or an answer: synonyms word by word (each with probability ``rate``),
    other forms of yes / no / "there is no X" answers."""
    stripped = text.strip()
    if stripped == "yes":
        return rng.choice(_YES)
    if stripped == "no":
        return rng.choice(_NO)
    match = _THERE_IS_NO.match(stripped)
    if match and rng.random() < 0.7:
        thing = match.group(1)
        stripped = rng.choice(
            (
                f"no {thing}",
                f"there isn't a {thing}",
                f"no {thing} at all",
                f"i don't see a {thing}",
                f"nope, no {thing}",
            )
        )
    words = stripped.split(" ")
    out = []
    for word in words:
        core = word.rstrip(",.?!")
        tail = word[len(core) :]
        forms = _WORDS.get(core)
        if forms and rng.random() < rate:
            core = rng.choice(forms)
        out.append(core + tail)
    return " ".join(out)


def idk_answer(rng: random.Random) -> str:
    """One of the ways people say they don't know."""
    return rng.choice(IDK_ANSWERS)
