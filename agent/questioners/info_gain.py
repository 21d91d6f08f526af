"""The LLM-free questioner: asks the bank question with the highest expected information gain.

Over the current top-N candidates ``c`` it holds a prior ``p(c) = softmax(score_c / T_prior)`` from the
retrieval scores. For a question ``q`` with answers ``a`` the scorer gives ``P(a | c)``; the expected drop of
the entropy of ``p(c)`` after hearing the answer is the mutual information

    IG(q) = H(C) - E_a[H(C | a)] = sum_{c,a} p(c) P(a|c) log(P(a|c) / P(a)),   P(a) = sum_c p(c) P(a|c).

The questioner picks the unasked question with the largest IG, and stops asking (returns ``None``) when the
top candidate's prior already exceeds ``stop_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.questioners.bank import BankQuestion, QuestionBank, generic_bank
from agent.questioners.base import question_key
from agent.questioners.scoring import CandidateScorer, softmax
from chatir.dialog import Dialog
from retriever_service.schemas import Hit


def mutual_information(prior: np.ndarray, likelihood: np.ndarray) -> float:
    """I(C; A) in nats for a prior ``(n,)`` over candidates and ``P(a|c)`` of shape ``(n, m)``."""
    joint = prior[:, None] * likelihood
    marginal = joint.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(joint > 0, likelihood / marginal[None, :], 1.0)
        return float(np.sum(np.where(joint > 0, joint * np.log(ratio), 0.0)))


def mutual_information_segments(prior: np.ndarray, likelihood: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """:func:`mutual_information` of many questions at once; question i owns columns ``starts[i]:starts[i+1]``."""
    joint = prior[:, None] * likelihood
    marginal = joint.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(likelihood / marginal[None, :]), 0.0)
    return np.add.reduceat(terms.sum(axis=0), starts)


def entropy(p: np.ndarray) -> float:
    nonzero = p[p > 0]
    return float(-(nonzero * np.log(nonzero)).sum())


class InfoGainQuestioner:
    """Expected-information-gain question selection over a question bank (fully offline)."""

    name = "info_gain"

    def __init__(
        self,
        scorer: CandidateScorer,
        bank: QuestionBank | None = None,
        *,
        top_n: int = 20,
        prior_temperature: float = 0.05,
        stop_threshold: float | None = 0.9,
    ) -> None:
        if top_n < 2:
            raise ValueError("top_n must be at least 2 (information gain needs candidates to tell apart)")
        if prior_temperature <= 0:
            raise ValueError("prior_temperature must be > 0")
        self.scorer = scorer
        self.bank = bank or generic_bank()
        self.top_n = top_n
        self.candidates_needed = top_n
        self.prior_temperature = prior_temperature
        self.stop_threshold = stop_threshold
        self._keys = [question_key(q.question) for q in self.bank]

    @property
    def needs_vectors(self) -> bool:
        """True when the searcher should send candidate image embeddings with the hits."""
        return bool(getattr(self.scorer, "request_vectors", False))

    def warm_up(self) -> None:
        """Embed every bank answer text now (round mode), so the first conversation does not wait for it."""
        warm = getattr(self.scorer, "warm_up", None)
        if callable(warm):
            warm(self.bank.questions)

    def prior(self, candidates: Sequence[Hit]) -> np.ndarray:
        scores = np.asarray([hit.score for hit in candidates], dtype=np.float64)
        return softmax(scores / self.prior_temperature)

    def rank_questions(
        self, dialog: Dialog, candidates: Sequence[Hit], asked: Sequence[str]
    ) -> list[tuple[BankQuestion, float]]:
        """Unasked bank questions with their expected information gain, best first."""
        pool = list(candidates[: self.top_n])
        asked_keys = {question_key(q) for q in asked}
        open_rows = [i for i, key in enumerate(self._keys) if key not in asked_keys]
        available = [self.bank.questions[i] for i in open_rows]
        if len(pool) < 2 or not available:
            return [(q, 0.0) for q in available]
        prior = self.prior(pool)
        matrix_of = getattr(self.scorer, "likelihood_matrix", None)
        if callable(matrix_of):  # vectorised: the whole bank at once (its text matrix is cached)
            likelihood, starts = matrix_of(dialog, self.bank.questions, pool)
            gains = mutual_information_segments(prior, np.asarray(likelihood, np.float64), starts)[open_rows]
        else:
            likelihoods = self.scorer.answer_likelihoods(dialog, available, pool)
            gains = np.array([mutual_information(prior, np.asarray(lk, np.float64)) for lk in likelihoods])
        gains = np.maximum(gains, 0.0)  # rounding can dip a hair below zero
        order = sorted(range(len(available)), key=lambda i: (-gains[i], i))  # ties: bank order
        return [(available[i], float(gains[i])) for i in order]

    def confident(self, candidates: Sequence[Hit]) -> bool:
        if self.stop_threshold is None or not candidates:
            return False
        if len(candidates) == 1:
            return True
        return float(self.prior(candidates[: self.top_n]).max()) >= self.stop_threshold

    def next_question(self, dialog: Dialog, candidates: list[Hit], asked: list[str]) -> str | None:
        if not candidates or self.confident(candidates):
            return None
        ranked = self.rank_questions(dialog, candidates, asked)
        return ranked[0][0].question if ranked else None
