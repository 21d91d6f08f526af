"""Live evaluation: questioners talk with the world's oracle through the conversation engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from chatir.dialog import Dialog
from chatir.settings import Settings, get_settings
from evaluation.cli import register
from evaluation.data import ImageCorpus, TargetDialog, load_chatir_dialogs
from evaluation.live import evaluate_live

N_TEST_IMAGES = 40
N_DIALOGS = 6
ROUNDS = 3


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return app


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from world.dialogs import make_splits

    root = tmp_path_factory.mktemp("world")
    make_splits(root, 0, 0, N_TEST_IMAGES, seed=3, size=32, test_dialogs=N_DIALOGS, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory) -> Path:
    """The first questions of the world's bank (the whole bank takes long to embed with the tiny model)."""
    from agent.questioners.bank import QuestionBank, world_bank

    bank = QuestionBank.from_pairs("small", [(q.question, q.answers) for q in list(world_bank())[:24]])
    path = tmp_path_factory.mktemp("bank") / "small.json"
    path.write_text(bank.to_json())
    return path


@pytest.fixture
def chatir_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHATIR_DEVICE", "cpu")
    monkeypatch.delenv("CHATIR_LLM_MODEL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_world_mode_compares_questioners_and_resumes(
    tmp_path, chatir_home, tiny_world, small_bank, tiny_clip_dir, monkeypatch
):
    from world.oracle import Oracle

    out = tmp_path / "out"
    args = [
        "eval",
        "--world",
        str(tiny_world),
        "--questioner",
        "none,random,infogain",
        "--rounds",
        str(ROUNDS),
        "--bank",
        str(small_bank),
        "--model",
        str(tiny_clip_dir),
        "--out",
        str(out),
        "--no-progress",
    ]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0, result.output

    payload = json.loads((out / "results.json").read_text())
    systems = {s["system"]: s for s in payload["systems"]}
    learned = {"no questions", "random (bank)", "info-gain (LLM-free)"}
    assert set(systems) == learned | {f"{name} · symbolic ceiling" for name in learned}
    ceiling = systems["info-gain (LLM-free) · symbolic ceiling"]
    assert ceiling["model_id"] == "symbolic" and len(ceiling["hits"]["10"]) == ROUNDS + 1
    gain_details = systems["info-gain (LLM-free)"]["details"]
    assert 0 <= gain_details["questions_absent_or_settled_pct"] <= 100 and gain_details["questions_asked"] > 0
    report = (out / "results.md").read_text()
    assert "learned retriever vs the symbolic ceiling" in report and "consistent images (median)" in report
    assert "- answers: text side" in report  # no answer model ships for this bank
    assert payload["meta"]["corpus_size"] == N_TEST_IMAGES and payload["meta"]["mode"] == "live"
    for name in ("results.csv", "results.md", "results.png"):
        assert (out / name).stat().st_size > 0

    ranks = np.load(out / "ranks.npz")
    none, rand, gain = ranks["none"], ranks["random"], ranks["info-gain"]
    assert none.shape == rand.shape == gain.shape == (N_DIALOGS, ROUNDS + 1)
    assert (none == none[:, :1]).all()  # no question, no new information: the rank never moves
    assert (none[:, 0] == rand[:, 0]).all() and (none[:, 0] == gain[:, 0]).all()  # same captions, same model
    assert systems["no questions"]["details"]["questions_asked_per_dialog"] == 0

    # the transcripts are ChatIR-format dialogs answered by the oracle from the target's ground truth
    targets = load_chatir_dialogs(tiny_world / "test_dialogs.json")
    for kind in ("random", "info-gain"):
        dialogs = load_chatir_dialogs(out / "dialogs" / f"{kind}.json")
        assert [d.img for d in dialogs] == [t.img for t in targets]
        for dialog, target in zip(dialogs, targets, strict=True):
            assert dialog.dialog.caption == target.dialog.caption
            questions = [r.question for r in dialog.dialog.rounds]
            assert len(questions) == len(set(questions))
            for turn in dialog.dialog.rounds:
                assert turn.answer == Oracle.for_image(dialog.img).answer(turn.question)
    assert all(len(d.dialog.rounds) == ROUNDS for d in load_chatir_dialogs(out / "dialogs" / "random.json"))

    # an interrupted or repeated run continues from the JSONL files
    again = CliRunner().invoke(cli_app(), args)
    assert again.exit_code == 0, again.output
    payload = json.loads((out / "results.json").read_text())
    assert all(
        s["details"]["resumed_dialogs"] == N_DIALOGS for s in payload["systems"] if s["system"] in learned
    )
    assert np.load(out / "ranks.npz")["random"].tolist() == rand.tolist()

    # the questioner's settings are part of what a run depends on: another setting starts that system afresh
    from chatir.settings import get_settings

    monkeypatch.setenv("CHATIR_INFO_GAIN_ANSWER_WEIGHT", "0")
    get_settings.cache_clear()
    third = CliRunner().invoke(cli_app(), args)
    assert third.exit_code == 0, third.output
    resumed = {
        s["system"]: s["details"]["resumed_dialogs"]
        for s in json.loads((out / "results.json").read_text())["systems"]
        if s["system"] in learned
    }
    assert resumed["info-gain (LLM-free)"] == 0


def test_llm_questioner_without_a_model_is_a_clear_error(tmp_path, chatir_home, tiny_world, tiny_clip_dir):
    result = CliRunner().invoke(
        cli_app(),
        [
            "eval",
            "--world",
            str(tiny_world),
            "--questioner",
            "llm",
            "--model",
            str(tiny_clip_dir),
            "--out",
            str(tmp_path / "o"),
            "--n-dialogs",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code != 0
    assert "CHATIR_LLM_MODEL" in str(result.exception) + result.output


class RepeatingQuestioner:
    """Offers the same question every turn (the engine must refuse the repeat; the harness must count it)."""

    name = "parrot"
    candidates_needed = 0

    def next_question(self, dialog, candidates, asked):
        return "Is it red?"


class YesAnswerer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def answer(self, target: str, image: Path, question: str, dialog: Dialog) -> str:
        self.calls.append((target, question))
        return "yes"


def test_repeated_questions_are_counted_before_the_engine_refuses_them(tmp_path, tiny_clip_dir):
    from retriever_service.models import load_model

    model = load_model(str(tiny_clip_dir), device="cpu")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(12):
        Image.new("RGB", (32, 32), (i * 20, 100, 250 - i * 20)).save(images / f"{i:02d}.png")
    corpus = ImageCorpus.from_folder(images)
    vectors = model.encode_images([Image.open(images / p) for p in corpus.paths])
    dialogs = [
        TargetDialog(img=corpus.paths[i], dialog=Dialog(caption=f"a picture, number {i}")) for i in (1, 5)
    ]
    answerer = YesAnswerer()

    result, ranks, transcripts = evaluate_live(
        model,
        corpus,
        vectors,
        dialogs,
        RepeatingQuestioner(),
        answerer,
        name="parrot",
        settings=Settings(home=tmp_path / "home"),
        rounds=4,
        progress=False,
    )
    assert result.repeated_questions == 1.0  # offered twice; the engine asked it once, then stopped asking
    assert [len(t.dialog.rounds) for t in transcripts] == [1, 1]
    assert answerer.calls == [(corpus.paths[1], "Is it red?"), (corpus.paths[5], "Is it red?")]
    assert (ranks[:, 1:] == ranks[:, 1:2]).all()  # nothing new after round 1
