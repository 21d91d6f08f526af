"""Live evaluation on real images with answerers that look at the target: an LLM with vision over OpenAI's
protocol (a local server speaking it) and a VQA model through transformers (a tiny BLIP VQA built from a
config through the same loading path as a hub model), end to end through ``chatir eval``."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from chatir.settings import get_settings
from frontends.main import app
from tests.fakes.openai_server import FakeOpenAIServer, Reply

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 90, 230), "yellow": (240, 230, 20)}


@pytest.fixture
def photos(tmp_path):
    """(image root, dialogs file): eight pictures, three targets described in a few words."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i, (name, colour) in enumerate([*COLOURS.items(), *COLOURS.items()]):
        picture = np.full((48, 64, 3), colour, dtype=np.uint8)
        picture[rng.integers(0, 40) :, :8] = 255
        (root / "set").mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(root / "set" / f"{name}-{i}.png")
    dialogs = [
        {"img": "set/red-0.png", "dialog": ["a red picture"]},
        {"img": "set/blue-2.png", "dialog": ["something blue"]},
        {"img": "set/green-5.png", "dialog": ["a green one with a white stripe"]},
    ]
    (tmp_path / "dialogs.json").write_text(json.dumps(dialogs))
    return root, tmp_path / "dialogs.json"


@pytest.fixture
def bank(tmp_path):
    path = tmp_path / "bank.json"
    path.write_text(
        json.dumps(
            [
                {"question": "What colour is it?", "answers": ["red", "green", "blue", "yellow"]},
                {"question": "Is there a white stripe?", "answers": ["yes", "no"]},
            ]
        )
    )
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHATIR_DEVICE", "cpu")
    monkeypatch.delenv("CHATIR_LLM_MODEL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _eval(tmp_path, photos, bank, model_dir, *args):
    root, dialogs = photos
    return CliRunner().invoke(
        app,
        ["eval", "--dialogs", str(dialogs), "--images", str(root), "--questioner", "infogain", "--bank", str(bank),
         "--rounds", "2", "--model", str(model_dir), "--out", str(tmp_path / "out"), "--no-cache", "--no-progress",
         *args],
    )  # fmt: skip


def test_an_llm_with_vision_answers_from_the_image(home, photos, bank, tiny_clip_dir, tmp_path, monkeypatch):
    def look(request):
        content = request["messages"][-1]["content"]
        url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
        assert url.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
            red, green, blue = image.convert("RGB").getpixel((40, 5))
        colour = max(("red", red), ("green", green), ("blue", blue), key=lambda pair: pair[1])[0]
        return Reply.text(f"it is {colour}")

    with FakeOpenAIServer(look) as server:
        monkeypatch.setenv("CHATIR_LLM_BASE_URL", server.base_url)
        result = _eval(
            tmp_path, photos, bank, tiny_clip_dir, "--answerer", "llm", "--answerer-model", "fake-vision"
        )
        assert result.exit_code == 0, result.output
        texts = [
            part["text"]
            for r in server.requests
            for part in r["messages"][-1]["content"]
            if part["type"] == "text"
        ]
    assert texts and all(text.startswith("Question: ") for text in texts)
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["meta"]["mode"] == "live" and report["meta"]["answerer"] == "llm (fake-vision)"
    assert report["systems"][0]["n_dialogs"] == 3
    transcripts = json.loads(next((tmp_path / "out" / "dialogs").glob("*.json")).read_text())
    answers = {entry["img"]: entry["dialog"][1:] for entry in transcripts}
    colour_rounds = [
        (img, a) for img, rounds in answers.items() for a in rounds if a.startswith("What colour")
    ]
    assert colour_rounds  # the colour question was asked ...
    assert all(a.endswith(f"it is {img.split('/')[1].split('-')[0]}") for img, a in colour_rounds)  # ... and
    # answered from the target's own pixels
    assert all(len(dialog) == 2 for dialog in answers.values())


def test_a_vqa_model_answers_through_transformers(home, photos, bank, tiny_clip_dir, tiny_blip_dir, tmp_path):
    from transformers import BlipConfig, BlipForQuestionAnswering

    torch.manual_seed(0)
    vqa = tmp_path / "tiny-blip-vqa"
    BlipForQuestionAnswering(BlipConfig.from_pretrained(tiny_blip_dir)).save_pretrained(vqa)
    for item in tiny_blip_dir.iterdir():  # the tokenizer and image processor
        if item.name not in ("config.json", "model.safetensors"):
            shutil.copy(item, vqa / item.name)
    result = _eval(tmp_path, photos, bank, tiny_clip_dir, "--answerer", "vqa", "--answerer-model", str(vqa))
    assert result.exit_code == 0, result.output
    transcripts = json.loads(next((tmp_path / "out" / "dialogs").glob("*.json")).read_text())
    assert all(len(entry["dialog"]) == 3 for entry in transcripts)  # caption + two answered rounds
    assert all(entry["dialog"][1].strip() for entry in transcripts)


def test_answerer_options_are_checked(home, photos, bank, tiny_clip_dir, tmp_path):
    no_model = _eval(tmp_path, photos, bank, tiny_clip_dir, "--answerer", "llm")
    assert no_model.exit_code != 0 and "vision chat model" in str(no_model.exception)
    missing = _eval(
        tmp_path, photos, bank, tiny_clip_dir, "--answerer", "vqa", "--answerer-model", str(tmp_path / "x")
    )
    assert missing.exit_code != 0 and "cannot be loaded" in str(missing.exception)
    wrong = _eval(tmp_path, photos, bank, tiny_clip_dir, "--answerer", "human")
    assert wrong.exit_code != 0 and "llm or vqa" in wrong.output
