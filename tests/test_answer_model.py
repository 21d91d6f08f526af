"""The answer model: a learned read-out of bank answers from image embeddings, used by the questioner and the
re-ranker when (and only when) the encoder runs the model it was fitted for."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytest

from agent.questioners import InfoGainQuestioner, ModelCandidateScorer, load_bank
from agent.questioners.answer_model import (
    PROBE_TEXT,
    SHIPPED,
    AnswerModel,
    AnswerModelError,
    load_answer_model,
)
from agent.rerank import AnswerReranker
from chatir.dialog import Dialog, Round
from tests.test_agent_support import GALLERY, TOY_BANK, KeywordModel, toy_oracle, toy_searcher
from tools.scope import SearchScope


class RoundBlindModel(KeywordModel):
    """The toy model whose text side cannot read answers ("What colour is the shape? red" embeds like the
    question alone, a dialog like its caption): the failure the answer model exists for. Captions and pictures
    read normally."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return super().encode_texts([t.split("?")[0] if "?" in t else t for t in texts])

    def dialog_text(self, dialog: Dialog) -> str:
        return dialog.caption


def keyword_answer_model(model: KeywordModel, *, probe_from: KeywordModel | None = None) -> AnswerModel:
    """An exact read-out for the toy bank: each answer's weight is its keyword's direction."""
    weights = np.concatenate([model.encode_texts(list(q.answers)) * 40.0 for q in TOY_BANK])
    return AnswerModel(
        [(q.question, q.answers) for q in TOY_BANK],
        weights,
        np.zeros(len(weights), np.float32),
        model=model.model_id,
        text_probe=(probe_from or model).encode_texts([PROBE_TEXT])[0],
    )


def _rank(hits, target_id: str) -> int:
    return next(i for i, h in enumerate(hits, 1) if h.id == target_id)


def test_an_answer_model_file_round_trips_and_bad_files_fail_clearly(tmp_path):
    model = KeywordModel()
    answers = keyword_answer_model(model)
    path = answers.save(tmp_path / "toy.npz")
    loaded = AnswerModel.load(path)
    assert loaded.questions == answers.questions and loaded.model == model.model_id
    np.testing.assert_allclose(loaded.weights, answers.weights, atol=0.05)  # stored as float16
    assert loaded.fingerprint == AnswerModel.load(path).fingerprint
    question = TOY_BANK.questions[0]
    assert loaded.covers(question)
    assert loaded.covers(question.model_copy(update={"question": question.question.upper()}))  # any spelling
    assert not loaded.covers(question.model_copy(update={"answers": ["red", "blue"]}))  # other answers
    assert load_answer_model(str(path), "toy").fingerprint == loaded.fingerprint
    assert load_answer_model("none", "world") is None
    assert load_answer_model("auto", "generic") is None  # nothing ships for real photos

    (tmp_path / "broken.npz").write_bytes(b"not a numpy archive")
    with pytest.raises(AnswerModelError, match="cannot read"):
        AnswerModel.load(tmp_path / "broken.npz")
    with pytest.raises(AnswerModelError, match="needs weights"):
        AnswerModel([("Is it?", ["yes", "no"])], np.zeros((3, 4)), np.zeros(3), model="m")


def test_the_scorer_reads_covered_questions_with_the_answer_model():
    model = RoundBlindModel()
    searcher = toy_searcher(model)
    red = next(image for image in GALLERY if image.colour == "red")
    hits = searcher.search(
        Dialog(caption=red.description()), k=4, scope=SearchScope.unrestricted(), with_vectors=True
    )
    question = TOY_BANK.questions[0]  # What colour is the shape?
    truth = [
        question.answers.index(toy_oracle(image, question.question))
        for image in (next(g for g in GALLERY if g.id == hit.id) for hit in hits)
    ]

    blind = ModelCandidateScorer(model, searcher, temperature=0.05).answer_likelihoods(
        Dialog(caption="x"), [question], hits
    )[0]
    assert np.allclose(blind, blind[:, :1])  # the text side cannot tell the answers apart

    scorer = ModelCandidateScorer(model, searcher, temperature=0.05, answer_model=keyword_answer_model(model))
    read = scorer.answer_likelihoods(Dialog(caption="x"), [question], hits)[0]
    np.testing.assert_allclose(read.sum(axis=1), 1.0, atol=1e-5)
    assert read.argmax(axis=1).tolist() == truth and read.max(axis=1).min() > 0.9


def test_an_answer_model_fitted_for_another_model_is_not_used(caplog):
    model = RoundBlindModel()
    searcher = toy_searcher(model)

    class OtherModel(KeywordModel):
        def encode_texts(self, texts):
            return np.roll(super().encode_texts(texts), 1, axis=1)

    stranger = keyword_answer_model(model, probe_from=OtherModel())
    scorer = ModelCandidateScorer(model, searcher, temperature=0.05, answer_model=stranger)
    with caplog.at_level(logging.WARNING):
        assert scorer.active_answer_model() is None
    assert "does not match" in caplog.text
    hits = searcher.search(
        Dialog(caption="a red shape"), k=3, scope=SearchScope.unrestricted(), with_vectors=True
    )
    read = scorer.answer_likelihoods(Dialog(caption="x"), [TOY_BANK.questions[0]], hits)[0]
    assert np.allclose(read, read[:, :1])  # the text side's (blind) reading, not the stranger's


def test_the_reranker_reads_answers_the_text_side_cannot():
    model = RoundBlindModel()
    searcher = toy_searcher(model)
    target = GALLERY[7]
    rounds = [
        Round(question=q.question, answer=toy_oracle(target, q.question)) for q in TOY_BANK.questions[:4]
    ]
    dialog = Dialog(caption="a picture", rounds=rounds)
    hits = searcher.search(dialog, k=len(GALLERY), scope=SearchScope.unrestricted(), with_vectors=True)

    def reranked_rank(answer_model: AnswerModel | None) -> int:
        scorer = ModelCandidateScorer(model, searcher, temperature=0.05, answer_model=answer_model)
        return _rank(AnswerReranker(scorer, TOY_BANK, pool=len(GALLERY)).rerank(dialog, hits), target.id)

    assert reranked_rank(keyword_answer_model(model)) == 1
    assert reranked_rank(None) > 1
    shouted = Dialog(
        caption="a picture", rounds=[r.model_copy(update={"answer": r.answer.upper() + "."}) for r in rounds]
    )
    reranker = AnswerReranker(ModelCandidateScorer(model, searcher), TOY_BANK)
    assert [a for _, a in reranker.answered_rounds(shouted)] == [r.answer for r in rounds]  # "RED." is "red"


def test_the_questioners_prior_reads_the_answers_given():
    model = RoundBlindModel()
    searcher = toy_searcher(model)
    scorer = ModelCandidateScorer(model, searcher, temperature=0.05, answer_model=keyword_answer_model(model))
    dialog = Dialog(caption="a shape", rounds=[Round(question="what colour is the shape?", answer="Red")])
    hits = searcher.search(dialog, k=len(GALLERY), scope=SearchScope.unrestricted(), with_vectors=True)
    reading = InfoGainQuestioner(scorer, TOY_BANK, top_n=len(GALLERY))
    assert reading.answered(dialog) == [(0, TOY_BANK.questions[0].answers.index("red"))]
    prior = reading.prior(hits, reading.answer_evidence(dialog, hits))
    red = np.array([hit.id.split("-")[1] == "red" for hit in hits])
    assert red.any() and (~red).any()
    assert prior[red].sum() > 0.95
    deaf = InfoGainQuestioner(scorer, TOY_BANK, top_n=len(GALLERY), answer_weight=0)
    assert deaf.answer_evidence(dialog, hits) is None
    assert deaf.prior(hits)[red].sum() < 0.95
    # the colour is settled by the answer, so it is never worth asking again in another wording
    ranked = [q.question for q, _ in reading.rank_questions(dialog, hits, [])]
    assert ranked[-1] == "What colour is the shape?"
    first, _ = deaf.rank_questions(dialog, hits, [])[0]
    assert first.question == "What colour is the shape?"  # without reading the answer it looks open
    with pytest.raises(ValueError, match="answer_weight"):
        InfoGainQuestioner(scorer, TOY_BANK, answer_weight=-1)


@pytest.mark.skipif(not SHIPPED["world"].is_file(), reason="no shipped world answer model")
def test_the_shipped_world_answer_model_covers_the_world_bank():
    answers = load_answer_model("auto", "world")
    assert answers is not None and answers.model == "starter"
    assert all(answers.covers(q) for q in load_bank("world"))
    assert answers.details["held_out_accuracy"] >= 0.95
