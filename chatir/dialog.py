"""The dialog D_i = (C, Q1, A1, ..., Qi, Ai): the one data model every layer passes around."""

from __future__ import annotations

import unicodedata

from pydantic import BaseModel, Field, field_validator

MAX_TEXT_CHARS = 2000
"""Longest caption, question or answer accepted at a boundary (a Slack message is at most 40K chars)."""


class Round(BaseModel):
    """One question of the questioner and the user's answer to it."""

    question: str = Field(..., max_length=MAX_TEXT_CHARS)
    answer: str = Field(..., max_length=MAX_TEXT_CHARS)

    def text(self) -> str:
        """The round as ChatIR writes it in its dialog files: "question answer"."""
        return f"{self.question.strip()} {self.answer.strip()}".strip()


class Dialog(BaseModel):
    """A caption (the user's first description) and the rounds of questions and answers so far."""

    caption: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    rounds: list[Round] = Field(default_factory=list, max_length=50)

    @field_validator("caption")
    @classmethod
    def _caption_not_blank(cls, value: str) -> str:
        if is_blank(value):
            raise ValueError("the caption must not be blank")
        return value

    def parts(self) -> list[str]:
        """[caption, "q1 a1", "q2 a2", ...] -- the list ChatIR's eval.py joins."""
        return [self.caption.strip(), *(r.text() for r in self.rounds)]

    def text(self, separator: str = ", ") -> str:
        """The whole dialog as one string, exactly as ChatIR evaluates it (``", ".join(dialog[:i+1])``)."""
        return separator.join(self.parts())

    def upto(self, n_rounds: int) -> Dialog:
        """D_i: the caption and the first ``n_rounds`` rounds."""
        return Dialog(caption=self.caption, rounds=self.rounds[:n_rounds])

    @classmethod
    def from_chatir(cls, entries: list[str]) -> Dialog:
        """From ChatIR's JSON form ``[caption, "question answer", ...]``.

        ChatIR stores each round as one string "question answer"; it is split after the first "?" (the
        whole string is the question when there is none), so :meth:`text` gives back the original.
        """
        if not entries:
            raise ValueError("a ChatIR dialog needs at least a caption")
        caption, *rounds = entries
        return cls(caption=caption, rounds=[_split_round(r) for r in rounds])


def _split_round(entry: str) -> Round:
    question, mark, answer = entry.partition("?")
    if not mark:
        return Round(question=entry.strip(), answer="")
    return Round(question=(question + mark).strip(), answer=answer.strip())


_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only spaces, control characters (NUL...) or zero-width characters."""
    return all(unicodedata.category(character) in _INVISIBLE for character in text)
