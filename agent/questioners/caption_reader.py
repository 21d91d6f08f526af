"""What a description already says, as bank answers: ``P(implied answer | description)`` per bank question.

The dialog encoder reads the first description into one vector, and for the starter that reading is the limit
once the answers are read well (:mod:`agent.questioners.answer_model`). On the 50K world, after two answers, the
target is in the top 10 for 44 % of dialogs; filtering the re-ranker's pool by the description's true claims
would give 77 %. Those claims are what this reader predicts: for every bank question, the answer the
description *implies* (every picture it is true of answers alike) or "open". It reads the words themselves
(hashed word uni-, bi- and skip-grams, averaged, one residual layer, a softmax per question over its answers
plus "open"), so "a rose background" can imply "pink" even where the text tower blurs it.

Its predictions are used only where confident (``P >= threshold``):
- the re-ranker reads each implied answer from the candidates' pictures, as if the person had given it;
- the information-gain questioner does not ask what the description already implies.

A :class:`CaptionReader` depends on the bank and on how descriptions are phrased, not on the image model. It is
fitted by :mod:`training.caption_reader` (``chatir starter caption-reader``) on training-world descriptions, and
loaded here with numpy only. For another bank (the generic one for photos) none ships: without one, nothing
changes.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.questioners.bank import BankQuestion
from agent.questioners.base import question_key
from agent.questioners.npz_files import read_npz, write_npz
from chatir.errors import ChatIRError

FORMAT = "chatir-caption-reader/1"
IMPLIED_THRESHOLD = 0.9
"""A reading is used when its implied answer has at least this probability (for the shipped world reader, 96 % of
such readings are right on held-out training-world descriptions)."""
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


QuestionId = tuple[str, tuple[str, ...]]
"""A bank question as a reader knows it: its normalised text and its answers."""


def implied_among(
    readings: dict[QuestionId, tuple[str, float]], questions: Sequence[BankQuestion]
) -> list[tuple[BankQuestion, str, float]]:
    """The :meth:`CaptionReader.readings` of ``questions``, most certain first."""
    found = []
    for question in questions:
        reading = readings.get((question_key(question.question), tuple(question.answers)))
        if reading is not None:
            found.append((question, *reading))
    return sorted(found, key=lambda item: -item[2])


class CaptionReaderError(ChatIRError):
    """A caption-reader file that cannot be read."""


def grams(text: str, buckets: int) -> list[int]:
    """Hashed features of ``text``: its words, word pairs and skip pairs (``a _ c``), in ``[0, buckets)``."""
    words = _WORD.findall(text.lower())
    features = (
        words
        + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        + [f"{a} _ {c}" for a, c in zip(words, words[2:], strict=False)]
    )
    return [zlib.crc32(feature.encode()) % buckets for feature in features]


class CaptionReader:
    """Hashed-n-gram embeddings -> residual layer -> per-question softmax over (answers..., open)."""

    def __init__(
        self,
        questions: Sequence[tuple[str, Sequence[str]]],
        *,
        buckets: int,
        keys: np.ndarray,
        table: np.ndarray,
        hidden: tuple[np.ndarray, np.ndarray],
        output: tuple[np.ndarray, np.ndarray],
        details: dict | None = None,
    ) -> None:
        self.questions = [(q, list(answers)) for q, answers in questions]
        self.buckets = int(buckets)
        self.keys = np.asarray(keys, np.int64)
        self.table = np.asarray(table, np.float32)
        self.hidden = (np.asarray(hidden[0], np.float32), np.asarray(hidden[1], np.float32))
        self.output = (np.asarray(output[0], np.float32), np.asarray(output[1], np.float32))
        self.details = dict(details or {})
        total = sum(len(answers) + 1 for _, answers in self.questions)
        dim = self.table.shape[1] if self.table.ndim == 2 else -1
        if (
            self.keys.shape != (len(self.table),)
            or np.any(np.diff(self.keys) <= 0)
            or self.hidden[0].shape != (dim, dim)
            or self.hidden[1].shape != (dim,)
            or self.output[0].shape != (total, dim)
            or self.output[1].shape != (total,)
        ):
            raise CaptionReaderError(
                f"a caption reader over {len(self.questions)} questions ({total} outputs) needs sorted keys, a "
                f"(keys, dim) table, a (dim, dim) layer and ({total}, dim) outputs; got keys {self.keys.shape}, "
                f"table {self.table.shape}, layer {self.hidden[0].shape}, outputs {self.output[0].shape}"
            )
        self._slices: dict[QuestionId, slice] = {}
        start = 0
        for question, answers in self.questions:
            self._slices[(question_key(question), tuple(answers))] = slice(start, start + len(answers) + 1)
            start += len(answers) + 1

    def covers(self, question: BankQuestion) -> bool:
        return (question_key(question.question), tuple(question.answers)) in self._slices

    def _features(self, text: str) -> np.ndarray:
        hashed = np.asarray(grams(text, self.buckets), np.int64)
        rows = np.searchsorted(self.keys, hashed)
        known = rows < len(self.keys)
        known[known] = self.keys[rows[known]] == hashed[known]
        if not hashed.size:
            return np.zeros(self.table.shape[1], np.float32)
        # a feature never seen in training has a zero embedding: it dilutes the mean as it did in training
        return self.table[rows[known]].sum(axis=0) / len(hashed)

    def logits(self, text: str) -> np.ndarray:
        """All outputs' logits for ``text`` (each question's answers, then its 'open')."""
        h = self._features(text)
        h = h + np.maximum(self.hidden[0] @ h + self.hidden[1], 0.0)
        return self.output[0] @ h + self.output[1]

    def readings(
        self, text: str, *, threshold: float = IMPLIED_THRESHOLD
    ) -> dict[QuestionId, tuple[str, float]]:
        """``{(question key, answers): (implied answer, P)}`` for every question whose answer ``text`` implies
        with ``P >= threshold``."""
        if not text.strip():
            return {}
        logits = self.logits(text)
        found = {}
        for (key, answers), block in self._slices.items():
            values = logits[block]
            p = np.exp(values - values.max())
            p /= p.sum()
            best = int(np.argmax(p))
            if best < len(answers) and p[best] >= threshold:
                found[(key, answers)] = (answers[best], float(p[best]))
        return found

    def implied(
        self, text: str, questions: Sequence[BankQuestion], *, threshold: float = IMPLIED_THRESHOLD
    ) -> list[tuple[BankQuestion, str, float]]:
        """``(question, answer, P)`` for each of ``questions`` whose answer ``text`` implies with ``P >=
        threshold``, most certain first."""
        return implied_among(self.readings(text, threshold=threshold), questions)

    @property
    def fingerprint(self) -> str:
        import hashlib

        digest = hashlib.sha256(self.output[0].astype(np.float16).tobytes())
        digest.update(self.table[:64].astype(np.float16).tobytes())
        return digest.hexdigest()[:16]

    # --- files ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        meta = {
            "format": FORMAT,
            "buckets": self.buckets,
            "questions": self.questions,
            "details": self.details,
        }
        arrays: dict[str, np.ndarray] = {
            "keys": self.keys.astype(np.uint32),
            "table": self.table.astype(np.float16),
            "hidden_w": self.hidden[0],
            "hidden_b": self.hidden[1],
            "output_w": self.output[0].astype(np.float16),
            "output_b": self.output[1],
        }
        return write_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> CaptionReader:
        meta, data = read_npz(path, FORMAT, CaptionReaderError, "caption reader")
        try:
            return cls(
                [(q, answers) for q, answers in meta["questions"]],
                buckets=int(meta["buckets"]),
                keys=data["keys"].astype(np.int64),
                table=data["table"].astype(np.float32),
                hidden=(data["hidden_w"], data["hidden_b"]),
                output=(data["output_w"].astype(np.float32), data["output_b"]),
                details=meta.get("details") or {},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CaptionReaderError(f"cannot read the caption reader {path}: {error}") from error


SHIPPED = {"world": Path(__file__).parent / "banks" / "world.caption-reader.npz"}
"""Caption readers that ship with the package, by bank name."""


def load_caption_reader(setting: str, bank: str) -> CaptionReader | None:
    """The reader ``CHATIR_CAPTION_READER`` names: ``auto`` (the one shipped for ``bank``, if any), ``none``, or
    the path of an ``.npz`` file."""
    if setting == "none":
        return None
    if setting == "auto":
        shipped = SHIPPED.get(bank)
        return CaptionReader.load(shipped) if shipped is not None and shipped.is_file() else None
    return CaptionReader.load(setting)
