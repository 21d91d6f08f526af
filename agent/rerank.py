"""Reading the answers: re-rank the top candidates by how well each image fits every answer given so far.

The dialog encoder embeds the whole dialog in one vector; with a small model, a ten-round dialog in one vector
blurs what each answer said ("is there a circle? no" reads much like "a circle"). For rounds whose question
has known alternative answers (a bank question), the same image-text model can score each answer *against
its alternatives* -- ``P(a | image) = softmax over the question's answers of cos(image, text("q a")) / T`` --
which is exactly how the information-gain questioner predicts answers. The candidates' score becomes

    score(image) = cos(image, dialog) / T_dialog + weight * sum over answered rounds of log P(a_r | image)

(a product of experts: the dialog encoder and one expert per answer). The answers the first description
already implies (the scorer's caption reader, :mod:`agent.questioners.caption_reader`) are read too, for questions
no round answered, with guards (``IMPLIED_*`` below): that is how the description's facts reach the re-read, from
the first turn on. Only the top ``pool`` images by the dialog encoder are re-ranked (their embeddings come with the
hits), so it works on any index. "I don't know" and rounds without a known question add nothing; an answer in the
user's own words is scored among the question's answers plus itself. No world-specific parsing: the same code
serves real photos with the generic bank. With the bank's answer model (:mod:`agent.questioners.answer_model`) the
listed answers are read from the image embeddings by its learned read-out, which is far more accurate than the text
side's reading of one isolated round. Returned hits carry ``score = T_dialog * combined``, so a softmax of ``score
/ T_dialog`` is the posterior the questioner should use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.intents import classify
from agent.questioners.bank import BankQuestion, QuestionBank
from agent.questioners.base import question_key
from agent.questioners.scoring import ModelCandidateScorer
from chatir.dialog import Dialog
from chatir.schemas import Hit
from chatir.settings import Settings

IMPLIED_SUPPORT_POOL = 50
IMPLIED_MIN_SUPPORT = 0.5
"""An implied answer is read only when at least this share of the dialog encoder's best ``IMPLIED_SUPPORT_POOL``
candidates has it (the mean of ``P(answer | image)``): the words and the text tower must not flatly disagree."""
IMPLIED_FLOOR = 0.1
"""An implied answer scores ``log(floor + (1 - floor) P(answer | image))``: a wrong one costs at most log 10."""


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class AnswerReranker:
    """Product-of-experts re-ranking of a candidate pool (see the module doc)."""

    def __init__(
        self,
        scorer: ModelCandidateScorer,
        bank: QuestionBank,
        *,
        pool: int = 3000,
        weight: float = 1.0,
        dialog_temperature: float = 0.05,
    ) -> None:
        if pool < 1:
            raise ValueError("pool must be at least 1")
        self.scorer = scorer
        self.pool = pool
        self.weight = weight
        self.dialog_temperature = dialog_temperature
        self._questions: dict[str, BankQuestion] = {question_key(q.question): q for q in bank}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        scorer: ModelCandidateScorer,
        bank: QuestionBank,
        *,
        dialog_temperature: float = 0.05,
    ) -> AnswerReranker | None:
        """The re-ranker ``CHATIR_RERANK_POOL`` / ``CHATIR_RERANK_WEIGHT`` ask for (None when the pool is 0)."""
        if settings.rerank_pool <= 0:
            return None
        return cls(
            scorer,
            bank,
            pool=settings.rerank_pool,
            weight=settings.rerank_weight,
            dialog_temperature=dialog_temperature,
        )

    def answered_rounds(self, dialog: Dialog) -> list[tuple[BankQuestion, str]]:
        """The rounds this reranker can read: a known question and an answer that says something."""
        rounds = []
        for round_ in dialog.rounds:
            question = self._questions.get(question_key(round_.question)) if round_.question else None
            if question is None or classify(round_.answer).kind == "dont_know":
                continue
            answer = round_.answer.strip()
            listed = {question_key(a): a for a in question.answers}
            rounds.append((question, listed.get(question_key(answer), answer)))  # "Yes." is the listed "yes"
        return rounds

    def implied(
        self, dialog: Dialog, rounds: list[tuple[BankQuestion, str]] | None = None
    ) -> list[tuple[BankQuestion, str]]:
        """The answers the description implies (the scorer's caption reader) for questions no round answered
        (the person's own answer comes first). ``rounds``: the dialog's :meth:`answered_rounds`, when already
        read."""
        rounds = self.answered_rounds(dialog) if rounds is None else rounds
        answered = {question_key(question.question) for question, _ in rounds}
        return [
            (question, answer)
            for question, answer, _ in self.scorer.caption_facts(dialog, list(self._questions.values()))
            if question_key(question.question) not in answered
        ]

    def evidence(self, dialog: Dialog) -> list[tuple[BankQuestion, str]]:
        """What the re-read reads: the answered rounds, then the answers the description implies."""
        rounds = self.answered_rounds(dialog)
        return rounds + self.implied(dialog, rounds)

    def scores(self, dialog: Dialog, image_vectors: np.ndarray, dialog_scores: np.ndarray) -> np.ndarray:
        """Combined scores (in units of the dialog temperature) of candidates with these embeddings."""
        dialog_scores = np.asarray(dialog_scores, np.float64)
        combined = dialog_scores / self.dialog_temperature
        vectors = np.asarray(image_vectors, np.float32)
        rounds = self.answered_rounds(dialog)
        for question, answer in rounds:
            answers = list(question.answers)
            if answer not in answers:
                answers.append(answer)  # the user's own words, scored among the listed answers
            logits = self.scorer.answer_logits(vectors, question, answers).astype(np.float64)
            combined += self.weight * _log_softmax(logits)[:, answers.index(answer)]
        implied = self.implied(dialog, rounds)
        if implied:
            # an implied answer is a guess from words alone, so it must be plausible among the dialog encoder's
            # own best candidates, and a wrong one costs a bounded amount
            best = np.argsort(-dialog_scores, kind="stable")[:IMPLIED_SUPPORT_POOL]
            for question, answer in implied:
                logits = self.scorer.answer_logits(vectors, question, question.answers).astype(np.float64)
                p = np.exp(_log_softmax(logits)[:, question.answers.index(answer)])
                if p[best].mean() >= IMPLIED_MIN_SUPPORT:
                    combined += self.weight * np.log(IMPLIED_FLOOR + (1 - IMPLIED_FLOOR) * p)
        return combined

    def ranking(
        self, dialog: Dialog, image_vectors: np.ndarray, dialog_scores: np.ndarray
    ) -> tuple[list[int], np.ndarray]:
        """A pool's order under the combined score (ties: pool order) and the score each candidate shows
        (``combined * dialog_temperature``); the pool as it is without evidence or with fewer than 2."""
        dialog_scores = np.asarray(dialog_scores, np.float64)
        if len(dialog_scores) < 2 or not self.evidence(dialog):
            return list(range(len(dialog_scores))), dialog_scores
        combined = self.scores(dialog, image_vectors, dialog_scores)
        order = np.argsort(-combined, kind="stable").tolist()  # best first, ties in pool order
        return order, combined * self.dialog_temperature

    def rerank(self, dialog: Dialog, hits: Sequence[Hit]) -> list[Hit]:
        """``hits`` (with vectors, best first by the dialog encoder) in the combined order."""
        hits = list(hits)
        if len(hits) < 2 or not self.evidence(dialog):
            return hits
        order, shown = self.ranking(
            dialog, self.scorer.candidate_vectors(hits), np.array([h.score for h in hits])
        )
        return [hits[i].model_copy(update={"score": float(shown[i])}) for i in order]
