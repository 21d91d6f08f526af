"""Fitting an answer model on training-world pictures: oracle labels, the fit, the file the questioner loads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.questioners import ModelCandidateScorer, QuestionBank, load_bank
from agent.questioners.answer_model import AnswerModel
from chatir.schemas import Hit
from training.answer_model import AnswerRecipe, fit_answer_model, oracle_labels
from world.oracle import Oracle
from world.render import render_scene
from world.scene import sample_scene

_WANTED = ("what colour is the background?", "is the background a gradient?", "how many shapes are there?")
BANK = QuestionBank(name="mini-world", questions=[q for q in load_bank("world") if q.question in _WANTED])


class PixelModel:
    """A stand-in image tower: mean colour of each cell of a 4x4 grid (48 numbers), L2-normalised. Enough for
    a linear read-out to learn the background colour from real rendered pictures."""

    model_id = "pixel-test-model"
    dim = 48

    def encode_images(self, images: Sequence) -> np.ndarray:
        rows = []
        for image in images:
            pixels = np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32).reshape(-1) / 255.0
            rows.append(pixels - 0.5)
        out = np.stack(rows)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            out[row, hash(text) % self.dim] = 1.0
        return out


def test_oracle_labels_index_the_listed_answers():
    scenes = [sample_scene(71, i) for i in range(20)]
    labels = oracle_labels(scenes, BANK)
    assert labels.shape == (20, 3) and (labels >= 0).all()
    for scene, row in zip(scenes, labels, strict=True):
        for question, label in zip(BANK, row, strict=True):
            truth = Oracle(scene).answer(question.question)
            assert (question.answers[label] == truth) if label >= 0 else truth not in question.answers


def test_a_fitted_answer_model_reads_held_out_pictures_and_loads_in_the_scorer(tmp_path):
    model = PixelModel()
    logs: list[str] = []
    fitted = fit_answer_model(
        model,
        BANK,
        AnswerRecipe(images=400, image_size=32, steps=300, batch_size=64, lr=0.05),
        log=logs.append,
    )
    assert any("held-out accuracy" in line for line in logs)
    assert fitted.model == "pixel-test-model" and fitted.details["recipe"]["images"] == 400
    path = fitted.save(tmp_path / "answers.npz")
    answers = AnswerModel.load(path)

    scenes = [sample_scene(93, i) for i in range(150)]  # another world: none of these was fitted on
    vectors = model.encode_images([render_scene(s, 32) for s in scenes])
    hits = [
        Hit(id=str(i), score=0.0, uri=f"file://{i}", thumbnail_url=f"/t/{i}", vector=v.tolist())
        for i, v in enumerate(vectors)
    ]
    scorer = ModelCandidateScorer(model, answer_model=answers)
    column = next(i for i, q in enumerate(BANK) if q.question == "what colour is the background?")
    background = scorer.answer_likelihoods(None, BANK.questions, hits)[column]  # type: ignore[arg-type]
    question = BANK.questions[column]
    truth = [question.answers.index(Oracle(s).answer(question.question)) for s in scenes]
    accuracy = float(np.mean(background.argmax(axis=1) == np.array(truth)))
    majority = max(np.bincount(truth)) / len(truth)
    assert accuracy > max(0.6, majority + 0.3), (accuracy, majority)


def test_chatir_starter_answers_fits_a_model_through_the_loader(tiny_clip_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from chatir.settings import get_settings
    from frontends.main import app

    monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    out = tmp_path / "answers.npz"
    args = [
        "starter",
        "answers",
        "--model",
        str(tiny_clip_dir),
        "--images",
        "40",
        "--steps",
        "3",
        "--threads",
        "1",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    answers = AnswerModel.load(out)
    assert answers.model == str(tiny_clip_dir) and all(answers.covers(q) for q in load_bank("world"))
    assert "held-out accuracy" in result.output

    missing = CliRunner().invoke(app, [*args, "--bank", str(tmp_path / "no-such-bank.json")])
    assert missing.exit_code != 0 and "no answer model ships" in str(missing.exception)
    get_settings.cache_clear()
