"""P(answer | candidate image): how likely each candidate is to get each answer to a bank question.

The in-process :class:`ModelCandidateScorer` embeds answer texts with the image-text model's text side and
compares them with the candidates' image embeddings: ``P(a | c) = softmax_a(cos(image_c, text(q, a)) / T)``.
The text of an answer is either the round alone (``"question answer"``, cached, cheap) or the dialog so far
extended by that round (``mode="dialog"``: what the dialog encoder was trained on; one encoding per answer
per turn).

With an :class:`~agent.questioners.answer_model.AnswerModel` for the bank (a learned read-out of the answers
from image embeddings), the questions it covers are scored ``softmax_a(image . w_a + b_a)`` instead, once the
encoder is confirmed to run the model it was fitted for.

Candidate image embeddings come with the hits (``SearchRequest.with_vectors``) or from a
:class:`VectorLookup` (the in-memory searcher of the evaluation harness and benchmarks).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from cachetools import LRUCache

from agent.questioners.answer_model import PROBE_TEXT, AnswerModel
from agent.questioners.bank import BankQuestion
from agent.questioners.caption_reader import CaptionReader, QuestionId, implied_among
from agent.vectors import hit_matrix
from chatir.dialog import Dialog, Round
from chatir.errors import ChatIRError
from chatir.schemas import Hit

logger = logging.getLogger(__name__)


@runtime_checkable
class TextEncoder(Protocol):
    """What the scorer needs of :class:`retriever_service.models.RetrievalModel`."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class VectorLookup(Protocol):
    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Image embeddings (rows aligned with ``ids``, L2-normalised); KeyError for an unknown id."""
        ...


class CandidateScorer(Protocol):
    def answer_likelihoods(
        self, dialog: Dialog, questions: Sequence[BankQuestion], candidates: Sequence[Hit]
    ) -> list[np.ndarray]:
        """One ``(len(candidates), len(question.answers))`` matrix per question; each row sums to 1."""
        ...


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=axis, keepdims=True)


class ModelCandidateScorer:
    """Scores answers against candidate images with the retrieval model's embeddings."""

    def __init__(
        self,
        encoder: TextEncoder,
        lookup: VectorLookup | None = None,
        *,
        mode: Literal["round", "dialog"] = "round",
        temperature: float = 0.2,
        cache_size: int = 20_000,
        request_vectors: bool | None = None,
        answer_model: AnswerModel | None = None,
        caption_reader: CaptionReader | None = None,
    ) -> None:
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.encoder = encoder
        self.lookup = lookup
        self.request_vectors = lookup is None if request_vectors is None else request_vectors
        """Ask the searcher to send image embeddings with the hits (the lookup then only fills gaps)."""
        self.mode = mode
        self.temperature = temperature
        self._cache: LRUCache[str, np.ndarray] = LRUCache(maxsize=cache_size)
        self._cache_size = cache_size
        self._blocks: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
        self._matrix: tuple[tuple, Any] | None = None
        self._lock = threading.Lock()
        self._model_id: str | None = None
        self.answer_model = answer_model
        self._answer_model_ok: bool | None = None  # checked against the encoder on first use
        self.caption_reader = caption_reader
        self._readings: LRUCache[str, dict[QuestionId, tuple[str, float]]] = LRUCache(maxsize=1024)

    def sync_model(self) -> None:
        """Ask the encoder which model it runs now (``current_model()``, when it can tell: the service's
        encoder asks ``/readyz``) and forget every cached text embedding when that changed -- a service
        restarted with another model would otherwise be scored against the old model's texts. The engine
        calls this once per conversation."""
        current = getattr(self.encoder, "current_model", None)
        if not callable(current):
            return
        model = str(current())
        with self._lock:
            if model == self._model_id:
                return
            if self._model_id is not None:
                logger.warning(
                    "the text encoder's model changed (%s -> %s): cached embeddings dropped",
                    self._model_id,
                    model,
                )
            self._cache.clear()
            self._blocks.clear()
            self._matrix = None
            self._model_id = model
            self._answer_model_ok = None

    def active_answer_model(self) -> AnswerModel | None:
        """The answer model when the encoder runs the model it was fitted for (checked once per model)."""
        if self.answer_model is None:
            return None
        if self._answer_model_ok is None:
            probe = np.asarray(self.encoder.encode_texts([PROBE_TEXT]), dtype=np.float32)[0]
            ok = probe.shape == (self.answer_model.dim,) and self.answer_model.fits(probe)
            if not ok:
                logger.warning(
                    "the answer model fitted for %s does not match the encoder's model: answers are read "
                    "through the text side",
                    self.answer_model.model,
                )
            self._answer_model_ok = ok
        return self.answer_model if self._answer_model_ok else None

    def caption_facts(
        self, dialog: Dialog, questions: Sequence[BankQuestion]
    ) -> list[tuple[BankQuestion, str, float]]:
        """``(question, answer, P)`` that the dialog's description already implies, by the caption reader
        (:mod:`agent.questioners.caption_reader`); none without a reader, or while answers are read through the
        text side (an implied answer is only worth reading from pictures with the answer model)."""
        if self.caption_reader is None or not dialog.caption.strip() or self.active_answer_model() is None:
            return []
        with self._lock:
            readings = self._readings.get(dialog.caption)
        if readings is None:
            readings = self.caption_reader.readings(dialog.caption)
            with self._lock:
                self._readings[dialog.caption] = readings
        return implied_among(readings, questions)

    def answer_logits(self, images: np.ndarray, question: BankQuestion, answers: Sequence[str]) -> np.ndarray:
        """``(len(images), len(answers))`` logits of ``P(answer | image)`` (softmax over the row): the answer
        model's when it covers ``question`` with exactly ``answers``, else ``cos(image, text("q a")) / T``."""
        answer_model = self.active_answer_model()
        if answer_model is not None and list(answers) == list(question.answers):
            block = answer_model.block(question)
            if block is not None:
                return images @ block[0].T + block[1]
        texts = [Round(question=question.question, answer=a).text() for a in answers]
        return (images @ self.encode(texts).T) / self.temperature

    # --- embeddings ----------------------------------------------------------------------------------
    def candidate_vectors(self, candidates: Sequence[Hit]) -> np.ndarray:
        matrix = hit_matrix(candidates)
        if matrix is None and self.lookup is not None:
            matrix = np.asarray(self.lookup.vectors([hit.id for hit in candidates]), dtype=np.float32)
        elif matrix is None:
            raise ChatIRError(
                "the information-gain questioner needs the candidates' image embeddings: search with "
                "with_vectors=True (the retriever service returns them) or give the scorer a vector lookup"
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.maximum(norms, 1e-12)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings, cached (bank rounds repeat across turns and conversations)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = np.asarray(self.encoder.encode_texts(missing), dtype=np.float32)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._cache[text] = vector
                found = [self._cache.get(t) for t in texts]
            if any(v is None for v in found):  # evicted meanwhile (tiny cache): encode directly
                return np.asarray(self.encoder.encode_texts(list(texts)), dtype=np.float32)
            return np.stack(found)  # type: ignore[arg-type]
        with self._lock:
            return np.stack([self._cache[t] for t in texts])

    def answer_texts(self, dialog: Dialog, question: BankQuestion) -> list[str]:
        rounds = [Round(question=question.question, answer=answer) for answer in question.answers]
        if self.mode == "round":
            return [r.text() for r in rounds]
        extended = [Dialog(caption=dialog.caption, rounds=[*dialog.rounds, r]) for r in rounds]
        dialog_text = getattr(self.encoder, "dialog_text", None)
        return [dialog_text(d) if callable(dialog_text) else d.text() for d in extended]

    def _round_block(self, question: BankQuestion) -> np.ndarray:
        key = (question.question, tuple(question.answers))
        block = self._blocks.get(key)
        if block is None:
            block = self.encode(self.answer_texts(Dialog(caption="-"), question))
            with self._lock:
                if len(self._blocks) >= self._cache_size:
                    self._blocks.clear()
                self._blocks[key] = block
        return block

    def warm_up(self, questions: Sequence[BankQuestion], *, batch: int = 256) -> None:
        """Embed the round texts of ``questions`` ahead of time (no-op in dialog mode), with progress."""
        if self.mode != "round":
            return
        answer_model = self.active_answer_model()
        if answer_model is not None and all(answer_model.covers(q) for q in questions):
            return  # nothing to embed: the answer model reads them
        from tqdm.auto import tqdm

        texts = [text for q in questions for text in self.answer_texts(Dialog(caption="-"), q)]
        for start in tqdm(
            range(0, len(texts), batch), desc="embedding question bank", unit="batch", leave=False
        ):
            self.encode(texts[start : start + batch])

    # --- CandidateScorer -----------------------------------------------------------------------------
    def likelihood_matrix(
        self, dialog: Dialog, questions: Sequence[BankQuestion], candidates: Sequence[Hit]
    ) -> tuple[np.ndarray, np.ndarray]:
        """All questions at once: ``P`` of shape ``(n_candidates, n_answers_total)`` and each question's first
        column (``starts``); ``P[:, starts[i]:starts[i+1]]`` is question i's ``P(a | c)``."""
        lengths = np.array([len(q.answers) for q in questions], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        images = self.candidate_vectors(candidates)
        weights, bias = self._logit_matrix(dialog, questions)
        return segment_softmax(images @ weights.T + bias, starts, lengths), starts

    def answer_likelihoods(
        self, dialog: Dialog, questions: Sequence[BankQuestion], candidates: Sequence[Hit]
    ) -> list[np.ndarray]:
        if not questions or not candidates:
            return [np.zeros((len(candidates), len(q.answers)), dtype=np.float32) for q in questions]
        matrix, starts = self.likelihood_matrix(dialog, questions, candidates)
        return [matrix[:, start : start + len(q.answers)] for q, start in zip(questions, starts, strict=True)]

    def _logit_matrix(
        self, dialog: Dialog, questions: Sequence[BankQuestion]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(weights, biases) whose product with an image embedding gives every answer's logit: the answer
        model's rows for the questions it covers, the answer texts' embeddings / T for the others."""
        answer_model = self.active_answer_model()
        blocks = [answer_model.block(q) for q in questions] if answer_model is not None else []
        if blocks and all(b is not None for b in blocks):
            key = ("answer-model", tuple((q.question, tuple(q.answers)) for q in questions))
            with self._lock:
                if self._matrix is not None and self._matrix[0] == key:
                    return self._matrix[1]
            matrix = (np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks]))  # type: ignore[index]
            with self._lock:
                self._matrix = (key, matrix)
            return matrix
        texts = self._text_matrix(dialog, questions) / self.temperature
        bias = np.zeros(len(texts), np.float32)
        if not blocks:
            return texts, bias
        start = 0
        texts = texts.copy()
        for question, block in zip(questions, blocks, strict=True):
            end = start + len(question.answers)
            if block is not None:
                texts[start:end], bias[start:end] = block
            start = end
        return texts, bias

    def _text_matrix(self, dialog: Dialog, questions: Sequence[BankQuestion]) -> np.ndarray:
        if self.mode != "round":
            return self.encode([text for q in questions for text in self.answer_texts(dialog, q)])
        # round texts are the same every turn: keep the matrix of the last question list (normally the bank)
        key = tuple((q.question, tuple(q.answers)) for q in questions)
        with self._lock:
            if self._matrix is not None and self._matrix[0] == key:
                return self._matrix[1]
        matrix = np.concatenate([self._round_block(q) for q in questions])
        with self._lock:
            self._matrix = (key, matrix)
        return matrix


def segment_softmax(logits: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Softmax over each column segment ``[start, start + length)`` of every row."""
    peaks = np.maximum.reduceat(logits, starts, axis=1)
    weights = np.exp(logits - np.repeat(peaks, lengths, axis=1))
    totals = np.add.reduceat(weights, starts, axis=1)
    return weights / np.repeat(totals, lengths, axis=1)
