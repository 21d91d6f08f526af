"""A learned read-out of a question bank's answers from a model's image embeddings: ``P(answer | image)``.

The information-gain questioner and the answer re-ranker need ``P(a | image)`` for every answer ``a`` of a bank
question. Read through the text side (``softmax_a cos(image, text("q a")) / T``) that is only as good as the
text tower's reading of one isolated round, which for the starter is poor: it predicts the world oracle's
answer for 58 % of (picture, question) pairs, and "is there a striped shape? no" embeds almost like "is there
a dotted shape? no". The image side is far better (99.9 % of the starter's attribute signs are right), so a
linear read-out fitted on pictures with known answers predicts 98.5 % of held-out ones (the shipped fit):

    P(a | image) = softmax over the question's answers of (image . w_a + b_a)

An :class:`AnswerModel` is that read-out for one bank and one model's image space, shipped as data
(``.npz``: weights, biases, the bank it covers, the model it was fitted for and a probe of that model's text
side). It is fitted by :mod:`training.answer_model` and loaded torch-free here; questions it does not cover, or
any question when the model behind the encoder is not the one it was fitted for, are read through the text
side as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.questioners.bank import BankQuestion
from agent.questioners.base import question_key
from agent.questioners.npz_files import read_npz, write_npz
from chatir.errors import ChatIRError

logger = logging.getLogger(__name__)

PROBE_TEXT = (
    "a red circle above a small blue square, is there a star? no, what colour is the background? grey"
)
"""Encoded by the model an answer model is fitted for; its embedding identifies that model later."""
PROBE_MIN_COSINE = 0.99
"""Same model within numerics (fp16, the ONNX fast path); another model's text side lands far lower."""
FORMAT = "chatir-answer-model/1"


class AnswerModelError(ChatIRError):
    """An answer-model file that cannot be read."""


class AnswerModel:
    """Per-answer weights ``(n_answers_total, dim)`` and biases over the image space of one model."""

    def __init__(
        self,
        questions: Sequence[tuple[str, Sequence[str]]],
        weights: np.ndarray,
        bias: np.ndarray,
        *,
        model: str,
        text_probe: np.ndarray | None = None,
        details: dict | None = None,
    ) -> None:
        weights = np.asarray(weights, np.float32)
        bias = np.asarray(bias, np.float32)
        total = sum(len(answers) for _, answers in questions)
        if weights.ndim != 2 or weights.shape[0] != total or bias.shape != (total,):
            raise AnswerModelError(
                f"an answer model over {total} answers needs weights ({total}, dim) and biases ({total},); "
                f"got {weights.shape} and {bias.shape}"
            )
        self.questions = [(q, list(answers)) for q, answers in questions]
        self.weights = weights
        self.bias = bias
        self.model = model
        self.text_probe = None if text_probe is None else np.asarray(text_probe, np.float32)
        self.details = dict(details or {})
        self._rows: dict[tuple[str, tuple[str, ...]], slice] = {}
        start = 0
        for question, answers in self.questions:
            self._rows[(question_key(question), tuple(answers))] = slice(start, start + len(answers))
            start += len(answers)

    @property
    def fingerprint(self) -> str:
        """A short hash of the weights (what an evaluation's resume key records)."""
        import hashlib

        digest = hashlib.sha256(self.weights.astype(np.float16).tobytes())
        digest.update(self.bias.tobytes())
        return digest.hexdigest()[:16]

    @property
    def dim(self) -> int:
        return int(self.weights.shape[1])

    def covers(self, question: BankQuestion) -> bool:
        return (question_key(question.question), tuple(question.answers)) in self._rows

    def block(self, question: BankQuestion) -> tuple[np.ndarray, np.ndarray] | None:
        """(weights, biases) of ``question``'s answers, in its order; None when this model does not cover it."""
        rows = self._rows.get((question_key(question.question), tuple(question.answers)))
        return None if rows is None else (self.weights[rows], self.bias[rows])

    def fits(self, probe_vector: np.ndarray) -> bool:
        """True when ``probe_vector`` (the encoder's embedding of :data:`PROBE_TEXT`) is the fitted model's."""
        if self.text_probe is None:
            return True
        vector = np.asarray(probe_vector, np.float32).ravel()
        if vector.shape != self.text_probe.shape:
            return False
        cosine = float(vector @ self.text_probe) / max(
            float(np.linalg.norm(vector) * np.linalg.norm(self.text_probe)), 1e-12
        )
        return cosine >= PROBE_MIN_COSINE

    # --- files ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        meta = {"format": FORMAT, "model": self.model, "questions": self.questions, "details": self.details}
        probe = self.text_probe if self.text_probe is not None else np.zeros(0, np.float32)
        arrays = {"weights": self.weights.astype(np.float16), "bias": self.bias, "text_probe": probe}
        return write_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> AnswerModel:
        meta, data = read_npz(path, FORMAT, AnswerModelError, "answer model")
        probe = data.get("text_probe")
        try:
            return cls(
                [(q, answers) for q, answers in meta["questions"]],
                data["weights"].astype(np.float32),
                data["bias"],
                model=str(meta["model"]),
                text_probe=probe if probe is not None and probe.size else None,
                details=meta.get("details") or {},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise AnswerModelError(f"cannot read the answer model {path}: {error}") from error


SHIPPED = {"world": Path(__file__).parent / "banks" / "world.starter-answers.npz"}
"""Answer models that ship with the package, by bank name (fitted for the starter)."""


def load_answer_model(setting: str, bank: str) -> AnswerModel | None:
    """The answer model ``CHATIR_ANSWER_MODEL`` names: ``auto`` (the one shipped for ``bank``, if any),
    ``none``, or the path of an ``.npz`` file."""
    if setting == "none":
        return None
    if setting == "auto":
        shipped = SHIPPED.get(bank)
        return AnswerModel.load(shipped) if shipped is not None and shipped.is_file() else None
    return AnswerModel.load(setting)
