"""Captions, dialogs, splits, caption ambiguity and the ``chatir world`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from chatir.dialog import Dialog
from world.cli import register
from world.dialogs import dialog_for, load_dialogs, make_dialog, make_splits, read_splits, split_seed
from world.generator import WorldError, load_manifest
from world.language import caption_for
from world.oracle import Oracle, answer_query
from world.questions import question_bank
from world.scene import parse_image_id, sample_scene, scene_rng
from world.stats import SceneTable, caption_match_counts, summarize

SEED = 21


def _facts(scene) -> int:
    return 5 * len(scene.objects) + 4


def test_captions_are_true_partial_and_deterministic() -> None:
    scenes = [sample_scene(SEED, i) for i in range(300)]
    captions = [caption_for(SEED, i, s) for i, s in enumerate(scenes)]
    assert [c.text for c in captions] == [caption_for(SEED, i, s).text for i, s in enumerate(scenes)]
    assert caption_for(SEED, 0, scenes[0], variant=1).claims is not None
    for scene, caption in zip(scenes, captions, strict=True):
        assert caption.matches(scene), caption.text
        assert answer_query(scene, caption.claims) == "yes"
        # the oracle reads the caption text itself as a yes/no question about the scene
        assert Oracle(scene).answer(caption.text) == "yes", caption.text
        mentioned = sum(
            bool(f.shapes) + bool(f.colours) + bool(f.sizes) + bool(f.patterns) + (f.cells is not None)
            for f, _ in caption.claims.groups
        ) + sum(v is not None for v in vars(caption.claims.scene).values())
        assert 1 <= mentioned < _facts(scene), caption.text  # partial: never the whole scene
        assert len(caption.claims.groups) <= 3
    texts = {c.text for c in captions}
    assert len(texts) > 250  # varied
    joined = " ".join(texts)
    assert any(w in joined for w in ("crimson", "scarlet")) and any(w in joined for w in ("tiny", "little"))
    assert any(w in joined for w in ("polka-dot", "spotted", "with dots", "with polka dots", "with spots"))


def test_caption_text_and_claims_agree_on_other_images() -> None:
    """A caption read by the oracle as a question about another image matches the caption's own claims."""
    scenes = [sample_scene(SEED, i) for i in range(120)]
    for i in range(120):
        caption = caption_for(SEED, i, scenes[i])
        for other in scenes[:25]:
            assert (Oracle(other).answer(caption.text) == "yes") == caption.matches(other), caption.text


def test_captions_alone_are_ambiguous_in_a_corpus() -> None:
    """ChatIR needs dialog: a caption alone fits many corpus images (hundreds in a 50K corpus)."""
    corpus = [sample_scene(SEED, i) for i in range(5000)]
    table = SceneTable.from_scenes(corpus)
    captions = [caption_for(SEED, i, corpus[i]) for i in range(200)]
    counts = caption_match_counts(table, captions)
    assert (counts >= 1).all()  # its own image
    exact = [sum(c.matches(s) for s in corpus[:500]) for c in captions[:20]]
    assert exact == list(caption_match_counts(corpus[:500], captions[:20]))  # vectorised == direct
    summary = summarize(counts)
    assert summary["mean"] >= 25 and summary["median"] >= 15  # at 50K that is hundreds
    assert summary["share_at_most_10"] < 0.3


def test_dialog_rounds_come_from_the_bank_without_repeats_and_oracle_answers() -> None:
    bank = set(question_bank())
    for index in range(40):
        scene = sample_scene(SEED, index)
        dialog = dialog_for(SEED, index)
        assert dialog == dialog_for(SEED, index)  # deterministic
        assert len(dialog.rounds) == 10
        questions = [r.question for r in dialog.rounds]
        assert len(set(questions)) == 10 and set(questions) <= bank
        oracle = Oracle(scene)
        assert all(r.answer == oracle.answer(r.question) for r in dialog.rounds)
        # ChatIR's text form round-trips
        assert Dialog.from_chatir(dialog.parts()) == dialog


def test_dialogs_mix_positive_and_negative_answers() -> None:
    answers = [r.answer for i in range(60) for r in dialog_for(SEED, i).rounds]
    positive = sum(a not in ("no", "none") and not a.startswith("there is no") for a in answers)
    assert 0.4 < positive / len(answers) < 0.95


def test_dialog_entries_in_parallel_equal_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    from world import dialogs

    serial = dialogs.dialog_entries(SEED, range(30), workers=1)
    monkeypatch.setattr(dialogs, "_DIALOG_CHUNK", 10)
    monkeypatch.setattr(dialogs, "_PARALLEL_FROM", 0)
    assert dialogs.dialog_entries(SEED, range(30), workers=2) == serial


def test_oracle_for_image_id_or_path() -> None:
    scene = sample_scene(SEED, 7)
    assert Oracle.for_image("w21-000007").scene == scene
    assert Oracle.for_image("/data/images/000/w21-000007.png").scene == scene
    with pytest.raises(ValueError):
        Oracle.for_image("holiday.jpg")


def test_make_dialog_refuses_more_rounds_than_questions() -> None:
    scene = sample_scene(SEED, 0)
    with pytest.raises(ValueError):
        make_dialog(scene, "a star", scene_rng(SEED, 0), rounds=3, bank=["is there a star?"])


def test_make_splits_writes_chatir_format_with_separate_seeds(tmp_path: Path) -> None:
    info = make_splits(tmp_path, 24, 8, 16, seed=4, size=32, workers=1, test_dialogs=5, progress=False)
    assert {s: info.splits[s].seed for s in info.splits} == {
        "train": split_seed(4, "train"),
        "val": split_seed(4, "val"),
        "test": split_seed(4, "test"),
    }
    assert len({s.seed for s in info.splits.values()}) == 3
    assert read_splits(tmp_path) == info
    ids: dict[str, set[str]] = {}
    for split, n_images, n_dialogs in (("train", 24, 24), ("val", 8, 8), ("test", 16, 5)):
        raw = json.loads((tmp_path / f"{split}_dialogs.json").read_text())
        assert len(raw) == n_dialogs
        for entry in raw:
            assert set(entry) == {"img", "dialog"}
            assert isinstance(entry["dialog"], list) and len(entry["dialog"]) == 11
            assert all(isinstance(t, str) and t for t in entry["dialog"])
            assert (tmp_path / split / entry["img"]).is_file()
        manifest = load_manifest(tmp_path / split)
        assert len(manifest) == n_images
        assert [e["img"] for e in raw] == [m.path for m in manifest[:n_dialogs]]
        ids[split] = {m.id for m in manifest}
        assert {parse_image_id(i)[0] for i in ids[split]} == {info.splits[split].seed}
        pairs = load_dialogs(tmp_path / f"{split}_dialogs.json")
        assert len(pairs) == n_dialogs and all(len(d.rounds) == 10 for _, d in pairs)
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    # rerunning is a no-op that gives identical files (resume)
    before = (tmp_path / "train_dialogs.json").read_bytes()
    make_splits(tmp_path, 24, 8, 16, seed=4, size=32, workers=1, test_dialogs=5, progress=False)
    assert (tmp_path / "train_dialogs.json").read_bytes() == before


def test_make_splits_rejects_bad_counts(tmp_path: Path) -> None:
    with pytest.raises(WorldError):
        make_splits(tmp_path, 4, 2, 2, seed=1, size=32, workers=1, test_dialogs=3, progress=False)
    assert not list(tmp_path.iterdir())  # nothing written before the error
    with pytest.raises(WorldError):
        make_splits(tmp_path, 0, 0, 0, seed=1, progress=False)
    with pytest.raises(WorldError):
        load_dialogs(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"img": 1}')
    with pytest.raises(WorldError, match="not a ChatIR dialog file"):
        load_dialogs(tmp_path / "bad.json")


@pytest.fixture
def cli() -> tuple[typer.Typer, CliRunner]:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, like the real `chatir` app
        pass

    register(app)
    return app, CliRunner()


def test_cli_generate_splits_ask_caption(cli, tmp_path: Path) -> None:
    app, runner = cli
    result = runner.invoke(
        app,
        [
            "world",
            "generate",
            str(tmp_path / "w"),
            "--n",
            "5",
            "--seed",
            "3",
            "--size",
            "32",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(load_manifest(tmp_path / "w")) == 5
    result = runner.invoke(
        app,
        [
            "world",
            "splits",
            str(tmp_path / "s"),
            "--train",
            "4",
            "--val",
            "2",
            "--test",
            "3",
            "--seed",
            "1",
            "--size",
            "32",
            "--workers",
            "1",
            "--test-dialogs",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "s" / "test_dialogs.json").read_text())) == 2
    scene = sample_scene(3, 2)
    question = f"what colour is the {scene.objects[0].shape}?"
    path = tmp_path / "w" / load_manifest(tmp_path / "w")[2].path
    for image in ("w3-000002", str(path)):
        result = runner.invoke(app, ["world", "ask", image, question])
        assert result.exit_code == 0 and result.output.strip() == Oracle(scene).answer(question)
    result = runner.invoke(app, ["world", "caption", "w3-000002"])
    assert result.output.strip() == caption_for(3, 2, scene).text
    result = runner.invoke(app, ["world", "ask", "not-an-id", "is there a star?"])
    assert result.exit_code != 0 and isinstance(result.exception, WorldError)


def test_cli_stats_prints_the_ambiguity(cli) -> None:
    app, runner = cli
    result = runner.invoke(app, ["world", "stats", "--corpus", "800", "--captions", "50", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "mean" in result.output and "median" in result.output


def test_scene_table_counts_match_python() -> None:
    scenes = [sample_scene(SEED, i) for i in range(200)]
    table = SceneTable.from_scenes(scenes)
    from world.query import ObjectFilter

    f = ObjectFilter(colours=frozenset({"red", "blue"}), cells=frozenset({"top left", "top", "top right"}))
    assert np.array_equal(table.count(f), [len(f.select(s.objects)) for s in scenes])
