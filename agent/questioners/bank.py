"""Banks of candidate questions, each with the answers a user may give, for the LLM-free questioners.

Two banks ship: :func:`generic_bank` (real photos and screenshots: scene, people, colours, counts, ...) and
:func:`world_bank` (the procedural world's own questions: ``banks/world.json``, generated from
:mod:`world.questions`). Any JSON file
``[{"question": ..., "answers": [...]}, ...]`` works too (:meth:`QuestionBank.from_json`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, TypeAdapter, field_validator

from chatir.errors import ChatIRError


class BankQuestion(BaseModel):
    """A question and the answers it can get (at least two, so it can tell candidates apart)."""

    question: str = Field(..., min_length=3, max_length=300)
    answers: list[str] = Field(..., min_length=2, max_length=200)

    @field_validator("answers")
    @classmethod
    def _distinct(cls, answers: list[str]) -> list[str]:
        cleaned = list(dict.fromkeys(a.strip() for a in answers if a.strip()))
        if len(cleaned) < 2:
            raise ValueError("a bank question needs at least two distinct answers")
        return cleaned


class QuestionBank(BaseModel):
    name: str
    questions: list[BankQuestion] = Field(..., min_length=1)

    def __iter__(self) -> Iterator[BankQuestion]:  # type: ignore[override]
        return iter(self.questions)

    def __len__(self) -> int:
        return len(self.questions)

    @classmethod
    def from_pairs(cls, name: str, pairs: Iterable[tuple[str, Sequence[str]]]) -> QuestionBank:
        return cls(name=name, questions=[BankQuestion(question=q, answers=list(a)) for q, a in pairs])

    @classmethod
    def from_json(cls, path: str | Path) -> QuestionBank:
        """A bank file: a JSON list of ``{"question": str, "answers": [str, ...]}``."""
        path = Path(path)
        try:
            items = TypeAdapter(list[BankQuestion]).validate_json(path.read_bytes())
        except FileNotFoundError as error:
            raise ChatIRError(f"question bank file {path} does not exist") from error
        except ValueError as error:
            raise ChatIRError(f"question bank file {path} is not a valid bank: {error}") from error
        return cls(name=path.stem, questions=items)

    def to_json(self) -> str:
        return json.dumps([q.model_dump() for q in self.questions], indent=1)


_YES_NO = ("yes", "no")

_GENERIC: list[tuple[str, Sequence[str]]] = [
    ("Is it a photo, a screenshot, a drawing or a chart?", ("a photo", "a screenshot", "a drawing", "a chart")),
    ("Is it indoors or outdoors?", ("indoors", "outdoors")),
    ("Is it daytime or night?", ("daytime", "night")),
    ("Are there any people in the image?", _YES_NO),
    ("How many people are there?", ("none", "one", "two", "three", "a group of people", "a crowd")),
    ("Is anyone looking at the camera?", _YES_NO),
    ("Is it a selfie or a group photo?", ("a selfie", "a group photo", "neither")),
    ("Is there an animal?", _YES_NO),
    ("What kind of animal is it?", ("a dog", "a cat", "a bird", "a horse", "a cow", "a fish", "no animal")),
    ("Is there a vehicle?", _YES_NO),
    ("What kind of vehicle is it?", ("a car", "a bus", "a bicycle", "a motorcycle", "a train", "a plane", "a boat")),
    ("What is the main colour of the image?",
     ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "white", "black", "gray")),
    ("What colour is the background?", ("white", "black", "blue", "green", "gray", "brown", "colourful")),
    ("Is the image bright or dark?", ("bright", "dark")),
    ("Is it in a city or in nature?", ("in a city", "in nature")),
    ("Is there water, like the sea, a lake or a river?", _YES_NO),
    ("Are there trees or plants?", _YES_NO),
    ("Are there buildings?", _YES_NO),
    ("What is the weather like?", ("sunny", "cloudy", "rainy", "snowy", "cannot tell")),
    ("Is there food in the image?", _YES_NO),
    ("Is there any text or writing in the image?", _YES_NO),
    ("Is it a close-up or a wide view?", ("a close-up", "a wide view")),
    ("Is there a screen, like a laptop or a phone?", _YES_NO),
    ("Is it at an office or a desk?", _YES_NO),
    ("Is it a diagram, a slide or a whiteboard?", ("a diagram", "a slide", "a whiteboard", "none of those")),
    ("Is someone holding something?", _YES_NO),
    ("Are people sitting or standing?", ("sitting", "standing", "no people")),
    ("Is there a table?", _YES_NO),
    ("Is it at a party or an event?", _YES_NO),
    ("Is there sky visible?", _YES_NO),
    ("Is it in black and white?", _YES_NO),
    ("Is there a logo in the image?", _YES_NO),
    ("Is it a portrait or a landscape picture?", ("portrait", "landscape", "square")),
]  # fmt: skip


def generic_bank() -> QuestionBank:
    """Questions that help with everyday pictures (photos, screenshots, slides)."""
    return QuestionBank.from_pairs("generic", _GENERIC)


BANKS_DIR = Path(__file__).parent / "banks"


@lru_cache(maxsize=1)
def world_bank() -> QuestionBank:
    """The procedural world's question bank, shipped as data (``banks/world.json``, written by
    ``chatir world bank``; a test checks it is what :mod:`world.questions` asks today)."""
    bank = QuestionBank.from_json(BANKS_DIR / "world.json")
    return bank.model_copy(update={"name": "world"})


def load_bank(name_or_path: str | Path) -> QuestionBank:
    """``"generic"``, ``"world"`` or the path of a JSON bank file."""
    if str(name_or_path) == "generic":
        return generic_bank()
    if str(name_or_path) == "world":
        return world_bank()
    return QuestionBank.from_json(name_or_path)
