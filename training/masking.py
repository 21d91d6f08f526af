"""Masking augmentation of training dialogs (ChatIR, Section 4: caption masking and its ablation).

ChatIR's best setting drops the caption with probability 0.2 whenever the dialog has at least one round
(i > 0), so the encoder learns to use the answers instead of leaning on the caption. The ablation's other
options are here too: drop each question, each answer, each whole round, or each word, independently.

A masked dialog is a list of text parts (caption first when kept, then one "question answer" string per
kept round), the same shape as ChatIR's JSON dialogs; joining it with the dialog separator gives the text.
It is never empty: when every part would be dropped the caption is kept.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from chatir.dialog import Dialog


class MaskingConfig(BaseModel):
    """Probabilities of the masking augmentation (each event independent)."""

    model_config = ConfigDict(extra="forbid")

    caption: float = Field(0.2, ge=0.0, le=1.0, description="drop the caption (only when i > 0)")
    question: float = Field(0.0, ge=0.0, le=1.0, description="drop a round's question, keep its answer")
    answer: float = Field(0.0, ge=0.0, le=1.0, description="drop a round's answer, keep its question")
    round: float = Field(0.0, ge=0.0, le=1.0, description="drop a whole round")
    token: float = Field(0.0, ge=0.0, le=1.0, description="drop each word of the dialog")

    @property
    def active(self) -> bool:
        return any((self.caption, self.question, self.answer, self.round, self.token))


NO_MASKING = MaskingConfig(caption=0.0)


def mask_dialog(dialog: Dialog, config: MaskingConfig, rng: np.random.Generator) -> list[str]:
    """The parts of ``dialog`` that survive masking (see the module docstring)."""
    caption = dialog.caption.strip()
    if not config.active:
        return dialog.parts()
    rounds: list[str] = []
    for round_ in dialog.rounds:
        if config.round and rng.random() < config.round:
            continue
        question = "" if config.question and rng.random() < config.question else round_.question.strip()
        answer = "" if config.answer and rng.random() < config.answer else round_.answer.strip()
        text = f"{question} {answer}".strip()
        if text:
            rounds.append(text)
    keep_caption = not (dialog.rounds and config.caption and rng.random() < config.caption)
    parts = ([caption] if keep_caption else []) + rounds
    if config.token:
        parts = [_drop_words(part, config.token, rng) for part in parts]
        parts = [part for part in parts if part]
    return parts or [caption]


def _drop_words(text: str, probability: float, rng: np.random.Generator) -> str:
    words = text.split()
    keep = rng.random(len(words)) >= probability
    return " ".join(word for word, kept in zip(words, keep, strict=True) if kept)
