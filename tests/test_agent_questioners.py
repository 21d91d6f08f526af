"""The LLM-free questioners: information gain (maths and choices), the random and the silent baselines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.questioners import (
    BankQuestion,
    InfoGainQuestioner,
    ModelCandidateScorer,
    NoQuestioner,
    QuestionBank,
    RandomQuestioner,
    generic_bank,
    is_repeat,
    load_bank,
    mutual_information,
)
from agent.questioners.info_gain import entropy
from agent.vectors import has_vector
from chatir.dialog import Dialog, Round
from chatir.errors import ChatIRError
from tests.test_agent_support import GALLERY, TOY_BANK, KeywordModel, rank_of, toy_oracle, toy_searcher
from tools.scope import SearchScope


@pytest.fixture
def toy():
    model = KeywordModel()
    searcher = toy_searcher(model)
    return model, searcher


SHARP = 0.05
"""The toy keyword model's cosines are exact, so a sharp scorer turns them into near-certain answers."""


def info_gain(model, searcher, **options) -> InfoGainQuestioner:
    return InfoGainQuestioner(ModelCandidateScorer(model, searcher, temperature=SHARP), TOY_BANK, **options)


# --- the maths ---------------------------------------------------------------------------------------
def test_mutual_information_by_hand():
    uniform = np.array([0.5, 0.5])
    assert mutual_information(uniform, np.eye(2)) == pytest.approx(
        math.log(2)
    )  # answer reveals the candidate
    assert mutual_information(uniform, np.full((2, 2), 0.5)) == pytest.approx(0.0)  # answer says nothing
    # a noisy answer: P(a|c) = [[0.9, 0.1], [0.1, 0.9]] -> I = ln2 - H(0.9, 0.1)
    noisy = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert mutual_information(uniform, noisy) == pytest.approx(math.log(2) - entropy(np.array([0.9, 0.1])))
    # four candidates, a question splitting them 2/2 is worth ln 2; one splitting 1/1/1/1 is worth ln 4
    prior = np.full(4, 0.25)
    halves = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    assert mutual_information(prior, halves) == pytest.approx(math.log(2))
    assert mutual_information(prior, np.eye(4)) == pytest.approx(math.log(4))
    # a confident prior leaves little to learn
    assert mutual_information(np.array([0.99, 0.01]), np.eye(2)) < 0.06


def test_scorer_likelihoods_are_distributions_and_follow_the_images(toy):
    model, searcher = toy
    hits = searcher.search(Dialog(caption="red circle"), k=4, scope=SearchScope())
    scorer = ModelCandidateScorer(model, searcher)
    colour, shape = TOY_BANK.questions[0], TOY_BANK.questions[1]
    likelihoods = scorer.answer_likelihoods(Dialog(caption="red circle"), [colour, shape], hits)
    assert [lk.shape for lk in likelihoods] == [(4, 3), (4, 3)]
    for lk in likelihoods:
        assert np.allclose(lk.sum(axis=1), 1.0)
    assert all(lk.argmax() == 0 for lk in likelihoods[0])  # red images answer "red"
    assert all(lk.argmax() == 0 for lk in likelihoods[1])  # circles answer "circle"
    # texts are cached: a second call encodes nothing new
    calls = model.calls
    scorer.answer_likelihoods(Dialog(caption="red circle"), [colour, shape], hits)
    assert model.calls == calls


def test_scorer_takes_vectors_from_hits_or_refuses_without_them(toy):
    model, searcher = toy
    dialog = Dialog(caption="blue star")
    with_vectors = searcher.search(dialog, k=3, scope=SearchScope(), with_vectors=True)
    assert with_vectors and all(has_vector(h) for h in with_vectors)
    from_hits = ModelCandidateScorer(model).answer_likelihoods(dialog, TOY_BANK.questions[:2], with_vectors)
    from_lookup = ModelCandidateScorer(model, searcher).answer_likelihoods(
        dialog, TOY_BANK.questions[:2], with_vectors
    )
    for a, b in zip(from_hits, from_lookup, strict=True):
        assert np.allclose(a, b, atol=1e-6)
    bare = searcher.search(dialog, k=3, scope=SearchScope())
    with pytest.raises(ChatIRError, match="with_vectors"):
        ModelCandidateScorer(model).answer_likelihoods(dialog, TOY_BANK.questions[:1], bare)
    assert InfoGainQuestioner(ModelCandidateScorer(model), TOY_BANK).needs_vectors
    assert not info_gain(model, searcher).needs_vectors


def test_dialog_mode_scores_the_extended_dialog(toy):
    model, searcher = toy
    dialog = Dialog(caption="red", rounds=[Round(question="What shape is it?", answer="star")])
    scorer = ModelCandidateScorer(model, searcher, mode="dialog")
    texts = scorer.answer_texts(dialog, TOY_BANK.questions[2])
    assert texts[0] == "red, What shape is it? star, What colour is the background? white"
    hits = searcher.search(dialog, k=6, scope=SearchScope())
    (lk,) = scorer.answer_likelihoods(dialog, [TOY_BANK.questions[2]], hits)
    expected = [0 if "white" in h.id else 1 for h in hits]
    assert list(lk.argmax(axis=1)) == expected


# --- choosing questions ----------------------------------------------------------------------------
def test_info_gain_asks_what_separates_the_candidates(toy):
    model, searcher = toy
    questioner = info_gain(model, searcher)
    dialog = Dialog(caption="something red")
    hits = searcher.search(dialog, k=20, scope=SearchScope())
    ranked = questioner.rank_questions(dialog, hits, [])
    gains = {q.question: g for q, g in ranked}
    # all red: colour tells nothing; shape splits 3 ways (ln 3) beats background/count (ln 2); sharpness is invisible
    assert ranked[0][0].question == "What shape is it?"
    assert gains["What shape is it?"] == pytest.approx(math.log(3), abs=0.02)
    assert gains["What colour is the background?"] == pytest.approx(math.log(2), abs=0.02)
    assert gains["What colour is the shape?"] < 0.01
    assert gains["Is the picture sharp?"] < 1e-6
    assert questioner.next_question(dialog, hits, []) == "What shape is it?"
    # once asked (in any spelling), the shape question is never asked again
    assert questioner.next_question(dialog, hits, ["what SHAPE is it"]) in {
        "What colour is the background?",
        "How many shapes are there?",
    }


def test_info_gain_stops_when_the_top_match_is_confident(toy):
    model, searcher = toy
    questioner = info_gain(model, searcher)
    target = GALLERY[5]
    dialog = Dialog(caption=f"a {target.colour} {target.shape}")
    hits = searcher.search(dialog, k=20, scope=SearchScope())
    assert questioner.next_question(dialog, hits, []) is not None
    rounds = [
        Round(question=q.question, answer=toy_oracle(target, q.question)) for q in TOY_BANK.questions[2:4]
    ]
    settled = Dialog(caption=dialog.caption, rounds=rounds)
    hits = searcher.search(settled, k=20, scope=SearchScope())
    assert hits[0].id == target.id
    assert questioner.next_question(settled, hits, [r.question for r in rounds]) is None
    never_stops = info_gain(model, searcher, stop_threshold=None)
    assert never_stops.next_question(settled, hits, [r.question for r in rounds]) is not None


def test_info_gain_lowers_the_target_rank_more_than_random_or_nothing(toy):
    """Over every toy target: 2 rounds of information-gain questions beat 2 random questions and none."""
    model, searcher = toy
    questioners = {
        "info_gain": info_gain(model, searcher, stop_threshold=None),
        "random": RandomQuestioner(TOY_BANK, seed=3),
        "none": NoQuestioner(),
    }
    mean_rank = {}
    for name, questioner in questioners.items():
        ranks = []
        for target in GALLERY:
            dialog = Dialog(caption=f"a {target.colour} thing")
            asked: list[str] = []
            for _ in range(2):
                hits = searcher.search(dialog, k=20, scope=SearchScope())
                question = questioner.next_question(dialog, hits, asked)
                if question is None:
                    break
                assert not is_repeat(question, asked)
                asked.append(question)
                dialog = Dialog(
                    caption=dialog.caption,
                    rounds=[*dialog.rounds, Round(question=question, answer=toy_oracle(target, question))],
                )
            ranks.append(rank_of(searcher, dialog, target.id))
        mean_rank[name] = float(np.mean(ranks))
    assert mean_rank["info_gain"] < mean_rank["random"] < mean_rank["none"], mean_rank
    assert mean_rank["info_gain"] <= 0.5 * mean_rank["none"], mean_rank


def test_random_questioner_is_seeded_and_never_repeats():
    bank = generic_bank()
    dialog = Dialog(caption="a photo of a party")
    first = RandomQuestioner(bank, seed=7)
    asked: list[str] = []
    while (question := first.next_question(dialog, [], asked)) is not None:
        assert not is_repeat(question, asked)
        asked.append(question)
    assert len(asked) == len(bank)  # it asks every question exactly once, then stops
    replay: list[str] = []
    again = RandomQuestioner(bank, seed=7)
    for _ in range(5):
        replay.append(again.next_question(dialog, [], replay))
    assert replay == asked[:5]
    other: list[str] = []
    other_seed = RandomQuestioner(bank, seed=8)
    for _ in range(5):
        other.append(other_seed.next_question(dialog, [], other))
    assert other != replay
    assert NoQuestioner().next_question(dialog, [], []) is None


# --- banks -------------------------------------------------------------------------------------------
def test_generic_bank_is_sound():
    bank = generic_bank()
    assert len(bank) >= 25
    keys = [q.question.lower() for q in bank]
    assert len(set(keys)) == len(keys)
    assert all(len(q.answers) >= 2 for q in bank)


def test_bank_files_load_and_bad_ones_fail_clearly(tmp_path):
    path = tmp_path / "bank.json"
    path.write_text(json.dumps([{"question": "Is it a cat?", "answers": ["yes", "no", "yes"]}]))
    bank = load_bank(path)
    assert bank.name == "bank" and bank.questions == [
        BankQuestion(question="Is it a cat?", answers=["yes", "no"])
    ]
    assert QuestionBank.from_json(path).to_json()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "Is it?", "answers": ["yes"]}]))
    with pytest.raises(ChatIRError, match="not a valid bank"):
        load_bank(bad)
    with pytest.raises(ChatIRError, match="does not exist"):
        load_bank(tmp_path / "missing.json")


def test_the_shipped_world_bank_is_what_the_world_asks_today(tmp_path):
    """agent/questioners/banks/world.json is data (the agent does not import the world); `chatir world bank`
    regenerates it when the world's questions change."""
    from agent.questioners import QuestionBank, world_bank
    from world.questions import bank_entries

    expected = QuestionBank.from_pairs("world", [(e["question"], e["answers"]) for e in bank_entries()])
    assert world_bank() == expected, "run: chatir world bank --out agent/questioners/banks/world.json"
    from typer.testing import CliRunner

    from frontends.main import app

    result = CliRunner().invoke(app, ["world", "bank", "--out", str(tmp_path / "bank.json")])
    assert result.exit_code == 0, result.output
    assert QuestionBank.from_json(tmp_path / "bank.json").questions == expected.questions


def test_world_bank_and_warm_up(toy):
    from agent.questioners import world_bank

    bank = world_bank()
    assert len(bank) >= 100 and all(len(q.answers) >= 2 for q in bank)
    assert len({q.question for q in bank}) == len(bank)
    model, searcher = toy
    questioner = info_gain(model, searcher)
    questioner.warm_up()
    dialog = Dialog(caption="a green square")
    hits = searcher.search(dialog, k=20, scope=SearchScope())
    calls = model.calls
    assert questioner.next_question(dialog, hits, []) == "What colour is the background?"  # shape is known
    assert model.calls == calls  # every bank text was embedded by warm_up


def test_vectorised_gains_equal_the_per_question_formula(toy):
    from agent.questioners.info_gain import mutual_information_segments

    model, searcher = toy
    scorer = ModelCandidateScorer(model, searcher, temperature=0.3)  # soft likelihoods: non-trivial gains
    dialog = Dialog(caption="a blue thing")
    hits = searcher.search(dialog, k=12, scope=SearchScope())
    prior = InfoGainQuestioner(scorer, TOY_BANK).prior(hits)
    matrix, starts = scorer.likelihood_matrix(dialog, TOY_BANK.questions, hits)
    fast = mutual_information_segments(prior, matrix.astype(np.float64), starts)
    slow = [
        mutual_information(prior, lk.astype(np.float64))
        for lk in scorer.answer_likelihoods(dialog, TOY_BANK.questions, hits)
    ]
    assert np.allclose(fast, slow, atol=1e-9) and max(slow) > 0.1

    class ListOnly:  # a scorer offering only the protocol's list form
        def answer_likelihoods(self, *args):
            return scorer.answer_likelihoods(*args)

    by_list = InfoGainQuestioner(ListOnly(), TOY_BANK).rank_questions(
        dialog, hits, ["How many shapes are there?"]
    )
    by_matrix = InfoGainQuestioner(scorer, TOY_BANK).rank_questions(
        dialog, hits, ["How many shapes are there?"]
    )
    assert [q.question for q, _ in by_list] == [q.question for q, _ in by_matrix]
    assert np.allclose([g for _, g in by_list], [g for _, g in by_matrix])
    assert "How many shapes are there?" not in [q.question for q, _ in by_list]


def test_info_gain_holds_back_settled_questions_and_questions_about_absent_things():
    from agent.questioners.bank import QuestionBank
    from agent.questioners.info_gain import is_absence_answer
    from chatir.schemas import Hit

    bank = QuestionBank.from_pairs(
        "v2",
        [
            ("What colour is the background?", ("white", "black")),
            ("What colour is the star?", ("red", "blue", "there is no star")),
            ("Is there a star?", ("yes", "no")),
            ("What shape is it?", ("circle", "square")),
        ],
    )

    class ReadScorer:
        """P(a | c) as the model would read four candidates: all on white, half circles, no star at all."""

        def __init__(self, star: bool) -> None:
            self.star = star

        def answer_likelihoods(self, dialog, questions, candidates):
            table = {
                "What colour is the background?": [[0.95, 0.05]] * 4,
                "What colour is the star?": [[0.49, 0.49, 0.02]] * 4
                if self.star
                else [[0.05, 0.05, 0.9]] * 4,
                "Is there a star?": [[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.4, 0.6]],
                "What shape is it?": [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]],
            }
            return [np.array(table[q.question]) for q in questions]

    hits = [Hit(id=f"c{i}", score=0.5, uri=f"file://c{i}", thumbnail_url=f"/t/c{i}") for i in range(4)]
    dialog = Dialog(caption="something on white")
    questioner = InfoGainQuestioner(ReadScorer(star=False), bank)
    ranked = [q.question for q, _ in questioner.rank_questions(dialog, hits, [])]
    assert ranked[:2] == ["What shape is it?", "Is there a star?"]
    assert set(ranked[2:]) == {"What colour is the background?", "What colour is the star?"}  # held back
    assert questioner.next_question(dialog, hits, ["What shape is it?", "Is there a star?"]) in set(
        ranked[2:]
    )
    # once the candidates all but agree there is a star (P(no star) < 0.05), its colour is worth asking
    ranked = [
        q.question
        for q, _ in InfoGainQuestioner(ReadScorer(star=True), bank).rank_questions(dialog, hits, [])
    ]
    assert ranked.index("What colour is the star?") < ranked.index("What colour is the background?")
    assert is_absence_answer("there is no star") and is_absence_answer("no animal")
    assert not is_absence_answer("no") and not is_absence_answer("none")


def test_the_llm_prompt_carries_the_candidates_reading(toy):
    from agent.questioners.prompts import render_request

    model, searcher = toy
    questioner = info_gain(model, searcher)
    dialog = Dialog(caption="a red circle on white")
    hits = [h for h in searcher.search(dialog, k=20, scope=SearchScope()) if "red-circle-on-white" in h.id]
    settled, absent = questioner.reading(dialog, hits)
    asked = {q for q, _, _ in settled}
    assert "What colour is the shape?" in asked and "What shape is it?" in asked
    assert all(p >= questioner.settled_threshold for _, _, p in settled)
    text = render_request(dialog, hits, [], (settled, absent))
    assert "Already settled" in text and "What shape is it? -> circle" in text
    assert "Already settled" not in render_request(dialog, hits, [])
