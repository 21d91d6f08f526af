"""The questioner G: reads the dialog so far and the current top candidates, asks the next question."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from chatir.dialog import Dialog
from chatir.schemas import Hit
from tools.scope import SearchScope


@runtime_checkable
class Questioner(Protocol):
    """Asks the next question, or returns ``None`` to stop asking (confident, or nothing useful left).

    ``candidates`` are the current top matches, best first; ``asked`` every question already asked in
    this search (the questioner must not repeat one -- the engine also refuses repeats).
    """

    name: str
    candidates_needed: int
    """How many top matches the questioner wants to see (the engine searches at least this many)."""

    def next_question(self, dialog: Dialog, candidates: list[Hit], asked: list[str]) -> str | None: ...


@runtime_checkable
class ScopeAware(Protocol):
    """A questioner that searches by itself (the LLM agent's tool) and so must be bound to the caller's scope.

    The engine calls :meth:`with_scope` with the scope stored for the conversation (narrowed by the images
    rejected with "None of these") before every turn; user text never reaches this argument.
    """

    def with_scope(self, scope: SearchScope) -> Questioner: ...


@functools.lru_cache(maxsize=4096)  # a re-ranked turn asks it for every bank question, several times
def question_key(question: str) -> str:
    """Normalised form used to detect repeats: lower case, letters and digits only."""
    return " ".join(re.findall(r"[a-z0-9]+", question.lower()))


def is_repeat(question: str, asked: Sequence[str]) -> bool:
    key = question_key(question)
    return any(key == question_key(previous) for previous in asked)
