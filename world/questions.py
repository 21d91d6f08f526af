"""The question bank of the world and the answers the oracle can give to a question.

The LLM-free questioner picks from :func:`question_bank`; to estimate each candidate image's answer it scores
"question answer" texts for every answer in :func:`possible_answers`. Every bank question is understood by
the oracle, and the oracle's answer is always one of its possible answers (tested).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

from world.oracle import (
    BACKDROP_ANSWER,
    LIGHTING_ANSWER,
    NO,
    SEVERAL,
    SOME,
    YES,
    describe_background,
    join_and,
    no_such,
    number_word,
    shape_phrase,
    value_phrase,
)
from world.query import (
    AttrCheck,
    AttrChoice,
    AttrOpen,
    Count,
    Describe,
    Exists,
    ObjectFilter,
    SameCheck,
    SceneCheck,
    SceneChoice,
    SceneOpen,
    Unknown,
    parse,
)
from world.vocab import (
    BACKDROPS,
    BACKGROUNDS,
    COLOURS,
    MAX_OBJECTS,
    PATTERNS,
    PLURALS,
    POSITIONS,
    REGION_PHRASE,
    SHAPES,
    SIZES,
)

_SIZE_WORD = {"small": "small", "medium": "medium-sized", "large": "large"}
_SIDES = ("left side", "right side", "top side", "bottom side")


@lru_cache(maxsize=1)
def _bank() -> tuple[str, ...]:
    q: list[str] = []
    # counting
    q.append("how many shapes are there?")
    q += [f"how many {c} shapes are there?" for c in COLOURS]
    q += [f"how many {PLURALS[s]} are there?" for s in SHAPES]
    q += [f"how many {_SIZE_WORD[z]} shapes are there?" for z in SIZES]
    q += [f"how many {p} shapes are there?" for p in PATTERNS]
    q += [f"how many shapes are {REGION_PHRASE[r]}?" for r in _SIDES]
    q.append("how many different colours are there?")
    # existence
    q += [f"is there a {c} shape?" for c in COLOURS]
    q += [f"is there a {s}?" for s in SHAPES]
    q += [f"is there a {_SIZE_WORD[z]} shape?" for z in SIZES]
    q += [f"is there a {p} shape?" for p in PATTERNS]
    q += [f"is there a {c} {s}?" for c in COLOURS for s in SHAPES]
    q += [f"is there anything {REGION_PHRASE[p]}?" for p in POSITIONS]
    q += ["is there more than one shape?", "are there more than two shapes?"]
    # open attribute questions
    q += [f"what colour is the {s}?" for s in SHAPES]
    q += [f"what colour is the {_SIZE_WORD[z]} shape?" for z in SIZES]
    q += [f"what colour is the shape {REGION_PHRASE[p]}?" for p in POSITIONS]
    q += [f"what shape is the {c} object?" for c in COLOURS]
    q += [f"what shape is the {_SIZE_WORD[z]} object?" for z in SIZES]
    q += [f"what shape is {REGION_PHRASE[p]}?" for p in POSITIONS]
    q += [f"what size is the {s}?" for s in SHAPES]
    q += [f"what pattern does the {s} have?" for s in SHAPES]
    q += [f"where is the {s}?" for s in SHAPES]
    q += [f"where is the {c} shape?" for c in COLOURS]
    q += [
        "what colour is the biggest shape?",
        "what colour is the smallest shape?",
        "what shape is the biggest object?",
        "what shape is the smallest object?",
    ]
    # yes/no checks about one object
    q += [f"is the {s} {p}?" for s in SHAPES for p in PATTERNS]
    q += [f"is the {s} {REGION_PHRASE[r]}?" for s in SHAPES for r in (*_SIDES, "centre")]
    q += [f"is the {s} {z}?" for s in SHAPES for z in ("small", "large")]
    # the scene
    q += [
        "what colour is the background?",
        "what kind of background is it?",
        "is the background plain?",
        "is there a tiled floor?",
        "is the background a gradient?",
        "is it dark?",
        "is there a frame around the picture?",
    ]
    q += [f"is the background {b}?" for b in BACKGROUNDS]
    return tuple(dict.fromkeys(q))


def question_bank() -> list[str]:
    """The candidate questions of the world (a few hundred, fixed order, no duplicates)."""
    return list(_bank())


def possible_answers(question: str) -> list[str]:
    """Every answer the oracle can give to ``question`` (any scene), without duplicates.

    Raises ``ValueError`` for a question the oracle does not understand or whose answers are open-ended
    (e.g. "what is in the top left?").
    """
    query = parse(question)
    answers = _answers(query)
    return list(dict.fromkeys(answers))


def _max_matches(f: ObjectFilter) -> int:
    return min(MAX_OBJECTS, len(f.cells)) if f.cells is not None else MAX_OBJECTS


def _can_be_absent(f: ObjectFilter) -> bool:
    return ObjectFilter(f.shapes, f.colours, f.sizes, f.patterns, f.cells) != ObjectFilter()


def _allowed(attribute: str, f: ObjectFilter) -> list[str]:
    vocabulary = {
        "colour": COLOURS,
        "shape": SHAPES,
        "size": SIZES,
        "pattern": PATTERNS,
        "position": POSITIONS,
    }
    allowed = f.constraint(attribute)
    return [v for v in vocabulary[attribute] if allowed is None or v in allowed]


def _value_answers(attribute: str, values: list[str], most: int) -> list[str]:
    out: list[str] = []
    if attribute == "shape":
        out += [shape_phrase(v, k) for v in values for k in range(1, most + 1)]
    else:
        out += [value_phrase(attribute, [v]) for v in values]
    if most >= 2:
        out += [value_phrase(attribute, list(pair)) for pair in combinations(values, 2)]
    if most >= 3 and len(values) >= 3:
        out.append(SEVERAL[attribute])
    return out


def _answers(query) -> list[str]:
    match query:
        case Unknown(reason=reason):
            raise ValueError(f"the oracle does not understand this question ({reason})")
        case Describe():
            raise ValueError("open-ended question: its answers cannot be listed")
        case Exists() | SceneCheck() | SameCheck():
            return [YES, NO]
        case Count(filter=f, scene=sf, distinct=distinct):
            most = _max_matches(f)
            if distinct:
                most = min(most, len(_allowed(distinct, f)))
            least = 1 if f == ObjectFilter() and sf.is_empty else 0
            return [number_word(n) for n in range(least, most + 1)]
        case AttrOpen(attribute=attribute, subject=subject):
            if subject.is_empty:
                raise ValueError("open-ended question about every object: its answers cannot be listed")
            out = _value_answers(attribute, _allowed(attribute, subject), _max_matches(subject))
            return out + ([no_such(subject)] if _can_be_absent(subject) else [])
        case AttrCheck(subject=subject, every=every):
            most = _max_matches(subject)
            out = [YES, NO] + ([SOME[k] for k in range(1, most)] if not every else [])
            return out + ([no_such(subject)] if _can_be_absent(subject) else [])
        case AttrChoice(subject=subject, attribute=attribute, options=options):
            labels = [label for label, _ in options]
            most = _max_matches(subject)
            out = [
                join_and(list(c))
                for k in range(1, min(most, len(labels)) + 1)
                for c in combinations(labels, k)
            ]
            values = _allowed(attribute, subject)
            out += ["neither, it is " + a for a in _value_answers(attribute, values, 1)]
            out += ["neither, they are " + a for a in _value_answers(attribute, values, most)]
            return out + ([no_such(subject)] if _can_be_absent(subject) else [])
        case SceneOpen(attribute=attribute):
            if attribute == "background":
                return list(BACKGROUNDS)
            if attribute == "backdrop":
                return [BACKDROP_ANSWER[b] for b in BACKDROPS]
            if attribute == "lighting":
                return list(LIGHTING_ANSWER.values())
            if attribute == "brightness":
                return ["bright", "dark"]
            return [describe_background(c, b) for c in BACKGROUNDS for b in BACKDROPS]
        case SceneChoice(attribute=attribute, options=options):
            values = {
                "background": list(BACKGROUNDS),
                "backdrop": [BACKDROP_ANSWER[b] for b in BACKDROPS],
                "lighting": list(LIGHTING_ANSWER.values()),
            }[attribute]
            return [label for label, _ in options] + [f"neither, it is {v}" for v in values]
    raise ValueError(f"unsupported question type {type(query).__name__}")  # pragma: no cover


def bank_entries() -> list[dict[str, object]]:
    """The world's questions that can tell scenes apart (two or more possible answers), each with those
    answers: the LLM-free questioners' ``world`` bank (``chatir world bank`` writes it as JSON)."""
    entries: list[dict[str, object]] = []
    for text in question_bank():
        answers = possible_answers(text)
        if len(set(answers)) >= 2:
            entries.append({"question": text, "answers": answers})
    return entries
