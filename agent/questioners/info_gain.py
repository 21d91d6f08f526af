"""The LLM-free questioner: asks the bank question with the highest expected information gain.

Over the current top-N candidates ``c`` it holds a prior ``p(c) = softmax(score_c / T_prior)`` from the
retrieval scores. For a question ``q`` with answers ``a`` the scorer gives ``P(a | c)``; the expected drop of
the entropy of ``p(c)`` after hearing the answer is the mutual information

    IG(q) = H(C) - E_a[H(C | a)] = sum_{c,a} p(c) P(a|c) log(P(a|c) / P(a)),   P(a) = sum_c p(c) P(a|c).

The questioner picks the unasked question with the largest IG, and stops asking (returns ``None``) when the
top candidate's prior already exceeds ``stop_threshold``.

It asks about what is there and about what is still open. From the predicted answer distribution
``P(a) = sum_c p(c) P(a|c)`` (the model's own reading of the candidates, no world-specific parsing, so the same
rule serves real photos with the generic bank) a question is held back when

- it is *settled*: one answer already has ``P(a) >= settled_threshold`` (e.g. the background colour after
  "on a pink grid": every candidate has a pink background);
- it asks about an object the candidates probably lack: its "absence" answers ("there is no circle",
  "no animal") have ``P >= absent_threshold`` together. "Is there a circle?" stays askable; "what colour is
  the circle?" waits until a circle is likely;
- the description already says it: the scorer's caption reader (:mod:`agent.questioners.caption_reader`)
  predicts the answer the first description implies with ``P >= 0.9`` ("what colour is the background?" after
  "two figures against a rose background"). The same facts go to the LLM questioner's prompt as settled.

Held-back questions are asked only when nothing else is left.

The candidates' prior also reads the answers already given (``answer_weight``, a product of experts as in
:mod:`agent.rerank`): ``p(c) = softmax(score_c / T_prior + answer_weight * sum_r log P(a_r | c))`` over the
rounds that answered a bank question with one of its answers. The dialog encoder's top candidates often
include pictures an earlier answer already rules out (a blue circle after "what colour is the circle? red");
without this they keep questions open that the dialog has settled ("is there a striped shape? no" followed by
"how many striped shapes are there?"). Only the questioner's prior changes; the ranking shown is the
retriever's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.questioners.bank import BankQuestion, QuestionBank, generic_bank
from agent.questioners.base import question_key
from agent.questioners.scoring import CandidateScorer, softmax
from chatir.dialog import Dialog
from chatir.schemas import Hit


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


def is_absence_answer(answer: str) -> bool:
    """An answer saying the thing asked about is not there: "there is no circle", "no animal" (not "no")."""
    text = answer.strip().lower()
    return text.startswith("there is no ") or (text.startswith("no ") and len(text) > 3)


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
        settled_threshold: float = 0.85,
        absent_threshold: float = 0.05,
        answer_weight: float = 1.0,
    ) -> None:
        if top_n < 2:
            raise ValueError("top_n must be at least 2 (information gain needs candidates to tell apart)")
        if prior_temperature <= 0:
            raise ValueError("prior_temperature must be > 0")
        if answer_weight < 0:
            raise ValueError("answer_weight must be >= 0")
        self.scorer = scorer
        self.bank = bank or generic_bank()
        self.top_n = top_n
        self.candidates_needed = top_n
        self.prior_temperature = prior_temperature
        self.stop_threshold = stop_threshold
        self.settled_threshold = settled_threshold
        self.absent_threshold = absent_threshold
        self.answer_weight = answer_weight
        self._keys = [question_key(q.question) for q in self.bank]
        self._row_of = {key: row for row, key in enumerate(self._keys)}
        self._answer_column = [{question_key(a): j for j, a in enumerate(q.answers)} for q in self.bank]
        self._absence = np.array(
            [is_absence_answer(a) for q in self.bank for a in q.answers], dtype=np.float64
        )

    @property
    def needs_vectors(self) -> bool:
        """True when the searcher should send candidate image embeddings with the hits."""
        return bool(getattr(self.scorer, "request_vectors", False))

    def warm_up(self) -> None:
        """Embed every bank answer text now (round mode), so the first conversation does not wait for it."""
        warm = getattr(self.scorer, "warm_up", None)
        if callable(warm):
            warm(self.bank.questions)

    def sync_model(self) -> None:
        """Drop cached text embeddings when the model behind them changed (see the scorer's ``sync_model``)."""
        sync = getattr(self.scorer, "sync_model", None)
        if callable(sync):
            sync()

    def prior(self, candidates: Sequence[Hit], evidence: np.ndarray | None = None) -> np.ndarray:
        """``softmax(score / T_prior + answer_weight * evidence)``; ``evidence`` from :meth:`answer_evidence`."""
        logits = np.asarray([hit.score for hit in candidates], dtype=np.float64) / self.prior_temperature
        if evidence is not None and self.answer_weight > 0:
            logits = logits + self.answer_weight * evidence
        return softmax(logits)

    def answered(self, dialog: Dialog) -> list[tuple[int, int]]:
        """(bank row, answer index) of every round that answered a bank question with one of its answers
        ("I don't know" and answers in other words say nothing here)."""
        found = []
        for round_ in dialog.rounds:
            row = self._row_of.get(question_key(round_.question)) if round_.question else None
            if row is not None:
                column = self._answer_column[row].get(question_key(round_.answer))
                if column is not None:
                    found.append((row, column))
        return found

    def answer_evidence(
        self,
        dialog: Dialog,
        pool: Sequence[Hit],
        likelihood: np.ndarray | None = None,
        starts: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """``sum_r log P(a_r | c)`` per candidate over the answered bank rounds (None when there are none).
        ``likelihood``/``starts``: the whole bank's matrix when already computed this turn."""
        answered = self.answered(dialog) if self.answer_weight > 0 else []
        if not answered:
            return None
        if likelihood is not None and starts is not None:
            columns = np.array([starts[row] + j for row, j in answered], dtype=np.int64)
            chosen = likelihood[:, columns]
        else:
            questions = [self.bank.questions[row] for row, _ in answered]
            matrices = self.scorer.answer_likelihoods(dialog, questions, pool)
            chosen = np.stack(
                [np.asarray(m, np.float64)[:, j] for m, (_, j) in zip(matrices, answered, strict=True)],
                axis=1,
            )
        return np.log(np.maximum(chosen, 1e-12)).sum(axis=1)

    def described(self, dialog: Dialog) -> list[tuple[BankQuestion, str, float]]:
        """``(question, answer, P)`` the description already implies (the scorer's caption reader, if any)."""
        facts = getattr(self.scorer, "caption_facts", None)
        return facts(dialog, self.bank.questions) if callable(facts) else []

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
        matrix_of = getattr(self.scorer, "likelihood_matrix", None)
        if callable(matrix_of):  # vectorised: the whole bank at once (its text matrix is cached)
            likelihood, starts = matrix_of(dialog, self.bank.questions, pool)
            likelihood = np.asarray(likelihood, np.float64)
            prior = self.prior(pool, self.answer_evidence(dialog, pool, likelihood, starts))
            gains = mutual_information_segments(prior, likelihood, starts)[open_rows]
            marginal = prior @ likelihood
            top_answer = np.maximum.reduceat(marginal, starts)[open_rows]
            absent = np.add.reduceat(marginal * self._absence, starts)[open_rows]
        else:
            prior = self.prior(pool, self.answer_evidence(dialog, pool))
            likelihoods = [
                np.asarray(lk, np.float64) for lk in self.scorer.answer_likelihoods(dialog, available, pool)
            ]
            gains = np.array([mutual_information(prior, lk) for lk in likelihoods])
            marginals = [prior @ lk for lk in likelihoods]
            top_answer = np.array([m.max() for m in marginals])
            absent = np.array(
                [
                    sum(p for p, a in zip(m, q.answers, strict=True) if is_absence_answer(a))
                    for m, q in zip(marginals, available, strict=True)
                ]
            )
        gains = np.maximum(gains, 0.0)  # rounding can dip a hair below zero
        held_back = (top_answer >= self.settled_threshold) | (absent >= self.absent_threshold)
        said = {question_key(q.question) for q, _, _ in self.described(dialog)}
        held_back |= np.array([question_key(q.question) in said for q in available], dtype=bool)
        order = sorted(
            range(len(available)), key=lambda i: (bool(held_back[i]), -gains[i], i)
        )  # ties: bank order
        return [(available[i], float(gains[i])) for i in order]

    def reading(
        self, dialog: Dialog, candidates: Sequence[Hit], *, limit: int = 8
    ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]:
        """What the candidates already agree on and what they probably lack, for the LLM questioner's prompt.

        Returns (settled, absent): ``(question, answer, P(answer))`` for bank questions whose predicted answer
        is settled, and for those whose "absence" answer is likely, most certain first, at most ``limit`` each.
        """
        pool = list(candidates[: self.top_n])
        if len(pool) < 2:
            return [], []
        likelihoods = [
            np.asarray(lk, np.float64)
            for lk in self.scorer.answer_likelihoods(dialog, self.bank.questions, pool)
        ]
        prior = self.prior(pool, self.answer_evidence(dialog, pool))
        said = {question_key(q.question): (q.question, a, p) for q, a, p in self.described(dialog)}
        settled, absent = list(said.values()), []
        for question, likelihood in zip(self.bank.questions, likelihoods, strict=True):
            if question_key(question.question) in said:
                continue
            marginal = prior @ likelihood
            best = int(np.argmax(marginal))
            answer = question.answers[best]
            if is_absence_answer(answer) and marginal[best] >= self.absent_threshold:
                absent.append((question.question, answer, float(marginal[best])))
            elif marginal[best] >= self.settled_threshold:
                settled.append((question.question, answer, float(marginal[best])))

        def by_certainty(item: tuple[str, str, float]) -> float:
            return -item[2]

        absent = list({a: (q, a, p) for q, a, p in sorted(absent, key=by_certainty, reverse=True)}.values())
        return sorted(settled, key=by_certainty)[:limit], sorted(absent, key=by_certainty)[:limit]

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
