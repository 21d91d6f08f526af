"""The caption reader: which bank answers a description already implies. The re-ranker reads them from the
pictures from the first turn on, and the questioner does not ask them (agent/questioners/caption_reader.py)."""

from __future__ import annotations

import json
import random
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.questioners import InfoGainQuestioner, ModelCandidateScorer, load_bank
from agent.questioners.caption_reader import (
    SHIPPED,
    CaptionReader,
    CaptionReaderError,
    grams,
    load_caption_reader,
)
from agent.rerank import AnswerReranker
from chatir.dialog import Dialog, Round
from tests.test_agent_support import GALLERY, TOY_BANK, toy_searcher
from tests.test_answer_model import RoundBlindModel, keyword_answer_model
from tools.scope import SearchScope

BUCKETS = 1 << 12
COLOUR = TOY_BANK.questions[0]  # "What colour is the shape?"
SHARP = TOY_BANK.questions[4]  # "Is the picture sharp?"


def emerald_reader() -> CaptionReader:
    """Reads one word the toy model's text side does not know: "emerald" implies a green shape (and, to show
    what is done with a negative answer, a picture that is not sharp). Anything else leaves every question
    open."""
    questions = [(q.question, q.answers) for q in TOY_BANK]
    total = sum(len(answers) + 1 for _, answers in questions)
    weights, bias = np.zeros((total, 1), np.float32), np.zeros(total, np.float32)
    start = 0
    for question, answers in questions:
        bias[start + len(answers)] = 3.0  # "open" wins by default
        if question in (COLOUR.question, SHARP.question):
            weights[start + list(answers).index("green" if question == COLOUR.question else "no"), 0] = 60.0
        start += len(answers) + 1
    return CaptionReader(
        questions,
        buckets=BUCKETS,
        keys=np.array([zlib.crc32(b"emerald") % BUCKETS]),
        table=np.ones((1, 1), np.float32),
        hidden=(np.zeros((1, 1), np.float32), np.zeros(1, np.float32)),
        output=(weights, bias),
    )


def _rounded(readings: dict) -> dict:
    """Readings with P to 2 decimals (a saved reader's weights are float16)."""
    return {key: (answer, round(p, 2)) for key, (answer, p) in readings.items()}


def _scorer(model, searcher, *, answer_model=True, reader=True) -> ModelCandidateScorer:
    return ModelCandidateScorer(
        model,
        searcher,
        temperature=0.05,
        answer_model=keyword_answer_model(model) if answer_model else None,
        caption_reader=emerald_reader() if reader else None,
    )


def test_features_are_words_pairs_and_skip_pairs_hashed_stably():
    assert grams("A red-ish Star!", BUCKETS) == [
        zlib.crc32(feature.encode()) % BUCKETS
        for feature in ("a", "red-ish", "star", "a red-ish", "red-ish star", "a _ star")
    ]
    assert grams("", BUCKETS) == [] and grams("...", BUCKETS) == []


def test_a_reader_file_round_trips_and_bad_files_fail_clearly(tmp_path):
    reader = emerald_reader()
    said = [(q, a) for q, a, _ in reader.implied("a emerald star", TOY_BANK.questions)]
    assert sorted(said, key=str) == sorted([(COLOUR, "green"), (SHARP, "no")], key=str)
    assert reader.implied("a crimson star", TOY_BANK.questions) == []  # an unseen word is no evidence
    assert reader.implied("   ", TOY_BANK.questions) == []
    loaded = CaptionReader.load(reader.save(tmp_path / "reader.npz"))
    assert _rounded(loaded.readings("a emerald star")) == _rounded(reader.readings("a emerald star"))
    assert loaded.fingerprint == reader.fingerprint and loaded.covers(COLOUR)
    assert load_caption_reader(str(tmp_path / "reader.npz"), "toy").buckets == BUCKETS
    assert load_caption_reader("none", "world") is None and load_caption_reader("auto", "toy") is None
    np.savez(tmp_path / "other.npz", meta=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(CaptionReaderError, match="not a chatir-caption-reader"):
        CaptionReader.load(tmp_path / "other.npz")
    with pytest.raises(CaptionReaderError, match="cannot read"):
        CaptionReader.load(tmp_path / "missing.npz")
    with pytest.raises(CaptionReaderError, match="sorted keys"):
        CaptionReader(
            [(COLOUR.question, COLOUR.answers)],
            buckets=BUCKETS,
            keys=np.array([5, 3]),
            table=np.ones((2, 1)),
            hidden=(np.zeros((1, 1)), np.zeros(1)),
            output=(np.zeros((4, 1)), np.zeros(4)),
        )


def test_the_reranker_reads_what_the_description_implies_from_the_first_turn(monkeypatch):
    import agent.rerank

    model = RoundBlindModel()
    searcher = toy_searcher(model)
    dialog = Dialog(caption="a emerald star")  # the text side reads "star" only
    hits = searcher.search(dialog, k=len(GALLERY), scope=SearchScope.unrestricted(), with_vectors=True)
    assert {h.id.split("-")[1] for h in hits[:4]} != {"green"}  # the encoder alone cannot tell the colour

    reranker = AnswerReranker(_scorer(model, searcher), TOY_BANK, pool=len(GALLERY))
    assert sorted(reranker.evidence(dialog), key=str) == sorted([(COLOUR, "green"), (SHARP, "no")], key=str)
    # a third of the encoder's best candidates are green: below the default support, the words alone are not
    # trusted against the text tower; where enough of them are, the green stars come first
    assert [h.id for h in reranker.rerank(dialog, hits)] == [h.id for h in hits]
    monkeypatch.setattr(agent.rerank, "IMPLIED_MIN_SUPPORT", 0.3)
    top = reranker.rerank(dialog, hits)[:4]
    assert all(h.id.split("-")[1:3] == ["green", "star"] for h in top)
    # and a wrong implied answer costs a bounded amount: at most log(1 / IMPLIED_FLOOR) per answer and image
    scores = reranker.scores(
        dialog, reranker.scorer.candidate_vectors(hits), np.array([h.score for h in hits])
    )
    plain = np.array([h.score for h in hits]) / reranker.dialog_temperature
    assert (plain - scores).max() <= 2 * np.log(1 / agent.rerank.IMPLIED_FLOOR) + 1e-9
    # the person's own answer to that question wins over what the description seemed to say
    answered = dialog.model_copy(update={"rounds": [Round(question=COLOUR.question, answer="blue")]})
    assert reranker.evidence(answered) == [(COLOUR, "blue"), (SHARP, "no")]
    # without a reader, or while answers are read through the text side, nothing is implied
    for scorer in (_scorer(model, searcher, reader=False), _scorer(model, searcher, answer_model=False)):
        assert scorer.caption_facts(dialog, TOY_BANK.questions) == []
        assert AnswerReranker(scorer, TOY_BANK).rerank(dialog, hits) == hits


def test_the_questioner_does_not_ask_what_the_description_says():
    model = RoundBlindModel()
    searcher = toy_searcher(model)
    dialog = Dialog(caption="a emerald shape")
    hits = searcher.search(dialog, k=len(GALLERY), scope=SearchScope.unrestricted(), with_vectors=True)
    reading = InfoGainQuestioner(_scorer(model, searcher), TOY_BANK, top_n=len(GALLERY))
    blind = InfoGainQuestioner(_scorer(model, searcher, reader=False), TOY_BANK, top_n=len(GALLERY))
    assert blind.rank_questions(dialog, hits, [])[0][0] == COLOUR  # the colour looks open to the encoder
    ranked = [q for q, _ in reading.rank_questions(dialog, hits, [])]
    assert ranked[0] != COLOUR and ranked.index(COLOUR) >= len(ranked) - 2  # held back with the pointless one
    settled, _ = reading.reading(dialog, hits)
    assert (COLOUR.question, "green") in [(q, a) for q, a, _ in settled]  # and the LLM's prompt is told


def test_answers_that_agree_only_at_their_base_rate_are_not_implied():
    from training.caption_reader import CaptionReaderRecipe, answer_rates, implied_labels

    given = np.array([[0, 1], [0, -1], [1, 1], [0, 1]])
    assert answer_rates(given, np.array([2, 3])).tolist() == [[0.75, 0.25, 0.0], [0.0, 0.75, 0.0]]

    bank = load_bank("world")
    small = {"reference": 2000, "descriptions": 300, "min_fit": 5}
    texts, any_agreement = implied_labels(bank, CaptionReaderRecipe(chance=1.0, **small), lambda _: None)
    same_texts, tested = implied_labels(bank, CaptionReaderRecipe(**small), lambda _: None)
    sizes = np.array([len(q.answers) for q in bank])
    assert texts == same_texts and ((any_agreement < 0) == (tested < 0)).all()
    labelled = tested[:, 0] >= 0
    implied, implied_any = tested[labelled] < sizes, any_agreement[labelled] < sizes
    assert labelled.sum() >= 100 and (tested[labelled][implied] == any_agreement[labelled][implied]).all()
    # the chance test only ever turns an agreement into "open", and most agreements were chance
    assert not (implied & ~implied_any).any() and implied.sum() < 0.8 * implied_any.sum()


def test_a_fitted_reader_learns_what_world_descriptions_imply(tmp_path):
    from training.caption_reader import CaptionReaderRecipe, fit_caption_reader

    wanted = (
        "is there a square?",
        "is there a circle?",
        "what colour is the background?",
        "is the background plain?",
    )
    bank = load_bank("world").model_copy(
        update={"questions": [q for q in load_bank("world") if q.question in wanted]}
    )
    assert len(bank) == len(wanted)
    logs: list[str] = []
    recipe = CaptionReaderRecipe(
        reference=3000,
        descriptions=3000,
        min_fit=5,
        buckets=1 << 14,
        dim=32,
        steps=400,
        held_out=300,
        lr=1e-2,
    )
    reader = fit_caption_reader(bank, recipe, log=logs.append)
    assert any("precision" in line for line in logs)
    held = reader.details["held_out"]
    assert held["precision"] >= 0.8 and held["recall"] >= 0.3, held
    said = {
        q.question: a
        for q, a, _ in reader.implied("a big red square on a plain blue background", bank.questions)
    }
    truth = {"is there a square?": "yes", "is there a circle?": "no", "is the background plain?": "yes"}
    assert said and all(truth.get(q) == a for q, a in said.items()), said  # says something, all of it true
    text = "a square on a plain background"
    assert _rounded(CaptionReader.load(reader.save(tmp_path / "r.npz")).readings(text)) == _rounded(
        reader.readings(text)
    )


def test_the_cli_fits_and_writes_a_reader(tmp_path):
    from frontends.main import app

    out = tmp_path / "reader.npz"
    result = CliRunner().invoke(
        app,
        [
            "starter", "caption-reader", "--out", str(out), "--descriptions", "600", "--reference", "2000",
            "--min-fit", "3", "--steps", "20", "--threads", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "caption reader:" in result.output and CaptionReader.load(out).covers(
        load_bank("world").questions[0]
    )


@pytest.mark.skipif(not SHIPPED["world"].is_file(), reason="no shipped world caption reader")
def test_the_shipped_reader_only_implies_what_is_true_of_the_described_picture():
    """On another world's descriptions (template captions and free descriptions), what the shipped reader says
    a description implies must hold for the picture it describes."""
    from world.language import caption_for
    from world.oracle import Oracle
    from world.paraphrase import free_description
    from world.scene import sample_scene

    reader = load_caption_reader("auto", "world")
    bank = load_bank("world")
    assert reader is not None and all(reader.covers(q) for q in bank)
    rng = random.Random(3)
    right = total = 0
    for index in range(150):
        scene = sample_scene(12, index)
        text = (
            caption_for(12, index, scene, index % 4).text if index % 2 else free_description(scene, rng).text
        )
        oracle = Oracle(scene)
        for question, answer, _ in reader.implied(text, bank.questions):
            total += 1
            right += oracle.answer(question.question) == answer
    assert total >= 150  # it does say something: at least one implied answer per description on average
    assert right / total >= 0.95, (right, total)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "tiny blue star up in the top left corner, alone on a beige grid with a frame",
            "is there a blue star?",
        ),
        (
            "one orange cross by itself in the top left, pink background with a border",
            "is there a orange cross?",
        ),
        ("two blue hoops on pink, one of them striped", "is there a blue ring?"),
        (
            "a black checked triangle lower right and a black star upper right, green tiles",
            "is there a black triangle?",
        ),
        (
            "big pink dotted star bottom left, black triangle top right, white background",
            "is there a pink star?",
        ),
        ("yellow cross and red star at the top, pink background, dark", "is there a yellow cross?"),
        ("a green ring on black and an orange diamond in the centre", "is there a orange diamond?"),
        ("a brown donut at the bottom on white, nothing else", "is there a brown ring?"),
    ],
)
def test_the_shipped_reader_never_denies_what_a_description_names(text, named):
    """Session 12's reader learned "no" as the prior of every "is there a ...?" question (its labels counted
    base-rate agreements as implied) and said it, with P >= 0.93, of the named thing in all but the last of these
    descriptions."""
    reader = load_caption_reader("auto", "world")
    assert reader is not None
    readings = {q.question.lower(): a for q, a, _ in reader.implied(text, load_bank("world").questions)}
    assert readings.get(named) in (None, "yes"), readings
