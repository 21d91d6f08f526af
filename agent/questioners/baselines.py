"""Baseline questioners for the evaluation harness: a random bank question, and no questions at all."""

from __future__ import annotations

import hashlib
import random

from agent.questioners.bank import QuestionBank, generic_bank
from agent.questioners.base import is_repeat
from chatir.dialog import Dialog
from chatir.schemas import Hit


class RandomQuestioner:
    """A random unasked question from the bank.

    The choice depends only on ``seed``, the caption and the number of questions asked so far, so a
    conversation replays identically whatever order conversations run in (and across threads).
    """

    name = "random"
    candidates_needed = 0

    def __init__(self, bank: QuestionBank | None = None, *, seed: int = 0) -> None:
        self.bank = bank or generic_bank()
        self.seed = seed

    def next_question(self, dialog: Dialog, candidates: list[Hit], asked: list[str]) -> str | None:
        available = [q.question for q in self.bank if not is_repeat(q.question, asked)]
        if not available:
            return None
        key = f"{self.seed}\x00{dialog.caption}\x00{len(asked)}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        return rng.choice(available)


class NoQuestioner:
    """Asks nothing: the caption-only baseline (round 0 forever)."""

    name = "none"
    candidates_needed = 0

    def next_question(self, dialog: Dialog, candidates: list[Hit], asked: list[str]) -> str | None:
        return None
