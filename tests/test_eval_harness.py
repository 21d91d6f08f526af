"""The evaluation harness end to end: fixed dialogs and live questioners on tiny inputs with a tiny model."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from chatir.dialog import Dialog
from chatir.settings import Settings, get_settings
from evaluation import embeddings as embeddings_module
from evaluation.cli import register
from evaluation.data import (
    EvaluationInputError,
    ImageCorpus,
    TargetDialog,
    load_chatir_dialogs,
)
from evaluation.embeddings import corpus_embeddings, text_embeddings
from evaluation.harness import dialog_round_texts, evaluate_fixed_dialogs

CHATIR_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chatir"
N_IMAGES = 40
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
SHAPES = ["square", "circle"]


# ------------------------------------------------------------------------------------------------ helpers


def make_images(root: Path) -> list[str]:
    """N_IMAGES distinct small pictures in two sub-folders; returns their relative paths (sorted)."""
    rng = random.Random(1)
    rgb = {
        "red": (220, 30, 30),
        "green": (30, 200, 30),
        "blue": (30, 30, 220),
        "yellow": (230, 230, 20),
        "purple": (140, 30, 160),
        "orange": (250, 140, 0),
        "white": (250, 250, 250),
        "black": (5, 5, 5),
    }
    paths = []
    for i in range(N_IMAGES):
        colour, shape = COLOURS[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % 2]
        image = Image.new("RGB", (32, 32), tuple(rng.randrange(60, 200) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        box = (4 + i % 5, 4 + i % 7, 26, 26)
        (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=rgb[colour])
        relative = f"{'ab'[i % 2]}/pic{i:03d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / relative)
        paths.append(relative)
    (root / "notes.txt").write_text("not an image")
    return sorted(paths)


def make_dialogs(paths: list[str], n: int, rounds: int = 10) -> list[dict]:
    """ChatIR-format dialogs with our own words (never ChatIR's text)."""
    entries = []
    for d in range(n):
        i = (d * 7) % len(paths)
        colour, shape = COLOURS[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % 2]
        turns = [f"is the {shape} {c}? {'yes' if c == colour else 'no'}" for c in COLOURS]
        turns += [f"what shape is it? a {shape}", f"what colour is it? {colour}", "is it big? fairly"]
        entries.append({"img": paths[i], "dialog": [f"a picture with a {shape}", *turns[:rounds]]})
    return entries


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return app


@pytest.fixture
def chatir_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CHATIR_HOME", str(home))
    monkeypatch.setenv("CHATIR_DEVICE", "cpu")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def tiny_model(tiny_clip_dir):
    from retriever_service.models import load_model

    return load_model(str(tiny_clip_dir), device="cpu", settings=Settings())


class CountingModel:
    """The real model, counting what it embeds (and failing after ``fail_after`` calls when set)."""

    def __init__(self, model, fail_after: int | None = None) -> None:
        self._model = model
        self.calls = 0
        self.images = 0
        self.texts = 0
        self.fail_after = fail_after

    def _count(self) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1

    def encode_images(self, images):
        self._count()
        self.images += len(images)
        return self._model.encode_images(images)

    def encode_texts(self, texts):
        self._count()
        self.texts += len(texts)
        return self._model.encode_texts(texts)

    def __getattr__(self, name):
        return getattr(self._model, name)


def brute_force_ranks(model, corpus_root: Path, entries: list[dict], rounds: int) -> np.ndarray:
    """Ranks the slow way: every image embedded, full stable sort of the scores, one dialog round at a time."""
    paths = sorted(p.relative_to(corpus_root).as_posix() for p in corpus_root.rglob("*.png"))
    image_vectors = model.encode_images([Image.open(corpus_root / p).convert("RGB") for p in paths])
    ranks = np.zeros((len(entries), rounds + 1), dtype=int)
    for d, entry in enumerate(entries):
        dialog = Dialog.from_chatir(entry["dialog"])
        texts = [model.dialog_text(dialog.upto(r)) for r in range(rounds + 1)]
        query = model.encode_texts(texts)
        for r in range(rounds + 1):
            order = np.argsort(-(image_vectors @ query[r]), kind="stable")
            ranks[d, r] = int(np.nonzero(order == paths.index(entry["img"]))[0][0]) + 1
    return ranks


# ------------------------------------------------------------------------------------------------ fixed dialogs


def test_fixed_dialogs_cli_writes_four_outputs_with_correct_ranks(
    tmp_path, chatir_home, tiny_clip_dir, tiny_model
):
    images = tmp_path / "images"
    paths = make_images(images)
    entries = make_dialogs(paths, 8)
    dialog_file = tmp_path / "mine.json"
    dialog_file.write_text(json.dumps(entries))
    second = tmp_path / "fewer_rounds.json"
    second.write_text(
        json.dumps([{**e, "dialog": e["dialog"][:4] + ["is it shiny? no"] * 7} for e in entries])
    )
    out = tmp_path / "out"

    result = CliRunner().invoke(
        cli_app(),
        [
            "eval",
            "--dialogs",
            str(dialog_file),
            "--dialogs",
            str(second),
            "--images",
            str(images),
            "--model",
            str(tiny_clip_dir),
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Hits@10" in result.output

    payload = json.loads((out / "results.json").read_text())
    assert payload["meta"]["corpus_size"] == N_IMAGES  # notes.txt is not an image
    assert (
        payload["meta"]["text_path"] == "onnx"
    )  # the service's faithful fast path (CHATIR_TEXT_FASTPATH=auto)
    systems = {s["system"]: s for s in payload["systems"]}
    assert set(systems) == {"mine", "fewer_rounds"}
    mine = systems["mine"]
    assert mine["rounds"] == list(range(11)) and mine["n_dialogs"] == 8
    assert len(mine["hits"]["10"]) == 11 and all(0 <= v <= 100 for v in mine["hits"]["10"])

    # ranks agree with a brute-force sort, and the metrics agree with the ranks
    ranks = np.load(out / "ranks.npz")
    expected = brute_force_ranks(tiny_model, images, entries, 10)
    assert ranks["mine"].tolist() == expected.tolist()
    assert mine["atr"] == pytest.approx(expected.mean(axis=0).tolist())
    first_hit = np.logical_or.accumulate(expected <= 10, axis=1)
    assert mine["hits"]["10"] == pytest.approx((first_hit.mean(axis=0) * 100).tolist())
    assert systems["fewer_rounds"]["repeated_questions"] == pytest.approx(6.0)  # "is it shiny?" asked 7 times

    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    hits10 = [r for r in rows if r["system"] == "mine" and r["metric"] == "hits" and r["k"] == "10"]
    assert [float(r["value"]) for r in hits10] == pytest.approx(mine["hits"]["10"])
    assert any(r["metric"] == "bri" for r in rows)

    table = (out / "results.md").read_text()
    assert "| mine | Hits@10 (%) |" in table and "| mine | ATR |" in table and "BRI" in table
    with Image.open(out / "results.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 400


def test_corpus_embeddings_are_cached_and_resume_after_interruption(tmp_path, tiny_model, monkeypatch):
    images = tmp_path / "images"
    make_images(images)
    corpus = ImageCorpus.from_folder(images)
    cache = tmp_path / "cache"
    fresh = corpus_embeddings(tiny_model, corpus, None, progress=False)

    monkeypatch.setattr(embeddings_module, "PART_SIZE", 8)
    interrupted = CountingModel(tiny_model, fail_after=3)  # the probe + two parts of 8, then "Ctrl-C"
    with pytest.raises(KeyboardInterrupt):
        corpus_embeddings(interrupted, corpus, cache, progress=False)

    resumed = CountingModel(tiny_model)
    vectors = corpus_embeddings(resumed, corpus, cache, progress=False)
    assert resumed.images == 1 + (N_IMAGES - 16)  # the probe, then only the parts not saved before
    np.testing.assert_allclose(vectors, fresh, atol=1e-6)

    cached = CountingModel(tiny_model)
    np.testing.assert_array_equal(corpus_embeddings(cached, corpus, cache, progress=False), vectors)
    assert cached.images == 1  # only the probe image that fingerprints the model

    (images / "a" / "pic000.png").write_bytes((images / "b" / "pic001.png").read_bytes())  # a file changed
    changed = CountingModel(tiny_model)
    corpus_embeddings(changed, corpus, cache, progress=False)
    assert changed.images == 1 + N_IMAGES


def test_text_embeddings_are_cached_and_resume_after_interruption(tmp_path, tiny_model):
    texts = [
        f"a picture with a {c} {s}, is it big? {a}" for c in COLOURS for s in SHAPES for a in ("yes", "no")
    ]
    texts = texts[:30] + texts[:5]  # duplicates are encoded once
    fresh = text_embeddings(tiny_model, texts, None, progress=False)
    assert fresh.shape == (35, 16)
    np.testing.assert_array_equal(fresh[30:], fresh[:5])

    cache = tmp_path / "texts"
    with pytest.raises(KeyboardInterrupt):  # the probe, two chunks of 8, then "Ctrl-C"
        text_embeddings(CountingModel(tiny_model, fail_after=3), texts, cache, chunk_size=8, progress=False)
    resumed = CountingModel(tiny_model)
    vectors = text_embeddings(resumed, texts, cache, chunk_size=8, progress=False)
    assert resumed.texts == 1 + (30 - 16)
    np.testing.assert_allclose(vectors, fresh, atol=1e-6)

    again = CountingModel(tiny_model)
    np.testing.assert_array_equal(text_embeddings(again, texts, cache, progress=False), vectors)
    assert again.texts == 1  # only the probe sentence that fingerprints the text tower


def test_unreadable_corpus_image_is_a_clear_error(tmp_path, tiny_model):
    images = tmp_path / "images"
    make_images(images)
    (images / "a" / "pic004.png").write_bytes(b"not a png at all")
    with pytest.raises(EvaluationInputError, match=r"pic004\.png"):
        corpus_embeddings(tiny_model, ImageCorpus.from_folder(images), tmp_path / "cache", progress=False)


def test_bad_inputs_give_clear_errors(tmp_path, tiny_model):
    images = tmp_path / "images"
    paths = make_images(images)
    corpus = ImageCorpus.from_folder(images)

    missing = [TargetDialog(img="elsewhere/x.png", dialog=Dialog(caption="a dog"))]
    with pytest.raises(EvaluationInputError, match="1 of 1 target images are not in the corpus"):
        evaluate_fixed_dialogs(
            tiny_model, missing, corpus, name="x", rounds=0, corpus_vectors=np.zeros((40, 16))
        )

    # a dialog shorter than the rounds asked keeps its last round (ChatIR's eval.py), and is counted
    short = [TargetDialog(img=paths[0], dialog=Dialog.from_chatir(["a dog", "is it big? yes"]))]
    result, ranks = evaluate_fixed_dialogs(tiny_model, short, corpus, name="x", corpus_vectors=np.zeros((40, 16)),
                                           progress=False)  # fmt: skip
    assert ranks.shape == (1, 11) and result.details["dialogs_shorter_than_rounds"] == 1
    texts = dialog_round_texts(tiny_model, [short[0].dialog], 3)
    assert texts[1] == texts[2] == texts[3] != texts[0]

    nulls = tmp_path / "nulls.json"
    nulls.write_text('[{"img": "a.png", "dialog": ["a dog", null]}]')
    with pytest.raises(EvaluationInputError, match="entry 0: dialog part 1 is null, not a string"):
        load_chatir_dialogs(nulls)

    broken = tmp_path / "broken.json"
    broken.write_text('[{"img": "a.png", "dialog": ')
    with pytest.raises(EvaluationInputError, match="not readable JSON"):
        load_chatir_dialogs(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"img": "a.png", "dialog": "a caption, not a list"}]))
    with pytest.raises(EvaluationInputError, match="entry 0"):
        load_chatir_dialogs(wrong)
    with pytest.raises(EvaluationInputError, match="does not exist"):
        load_chatir_dialogs(tmp_path / "nope.json")

    listing = tmp_path / "corpus.json"
    listing.write_text(json.dumps([paths[1], "./" + paths[0]]))
    listed = ImageCorpus.from_list(listing, images)
    assert listed.paths == (paths[1], paths[0])  # the list's order defines the corpus ids, as in ChatIR
    listing.write_text(json.dumps([paths[0], "gone/missing.png"]))
    with pytest.raises(EvaluationInputError, match="missing"):
        ImageCorpus.from_list(listing, images)


def test_cli_rejects_mixed_or_missing_modes(tmp_path):
    result = CliRunner().invoke(cli_app(), ["eval", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--dialogs" in result.output
    result = CliRunner().invoke(cli_app(), ["eval", "--world", str(tmp_path), "--questioner", "oracle"])
    assert result.exit_code != 0 and "unknown questioner" in result.output


# ------------------------------------------------------------------------------------------------ ChatIR's files


@pytest.mark.parametrize("name", ["VisDial_v1.0_queries_val.json", "ChatGPT_BLIP2.json"])
def test_chatir_dialog_files_parse(name):
    path = CHATIR_DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    raw = json.loads(path.read_text())
    dialogs = load_chatir_dialogs(path)
    assert len(dialogs) == len(raw) == 2064
    for entry, parsed in zip(raw, dialogs, strict=True):
        assert parsed.img == entry["img"] and parsed.img.startswith("unlabeled2017/")
        assert len(parsed.dialog.rounds) == 10
        # ChatIR's own join, up to whitespace (a round may hold "question?\nAnswer: ..." or end in a newline)
        assert "".join(parsed.dialog.text().split()) == "".join(", ".join(entry["dialog"]).split())


def test_chatir_dialogs_evaluate_on_stand_in_images(tmp_path, tiny_model):
    """ChatIR's real dialog text through the whole fixed protocol (the COCO images are stood in for)."""
    path = CHATIR_DATA_DIR / "VisDial_v1.0_queries_val.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    dialogs = load_chatir_dialogs(path, limit=12)
    images = tmp_path / "coco"
    for i, d in enumerate(dialogs):
        (images / d.img).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (i * 20, 255 - i * 20, 90)).save(images / d.img, format="JPEG")
    for i in range(20):
        Image.new("RGB", (30, 40), (i * 12, 40, 200 - i * 9)).save(images / "unlabeled2017" / f"extra{i}.jpg")
    corpus = ImageCorpus.from_folder(images)
    result, ranks = evaluate_fixed_dialogs(tiny_model, dialogs, corpus, name="visdial", progress=False)
    assert ranks.shape == (12, 11) and ranks.min() >= 1 and ranks.max() <= 32
    assert result.n_dialogs == 12 and len(result.atr) == 11
