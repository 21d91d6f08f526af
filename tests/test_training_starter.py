"""End to end on CPU: the starter recipe at tiny size (world -> image-caption -> dialogs -> export -> assemble).

This is the CI training run: a few hundred world images, short epochs. The loss must fall and validation
Hits@10 must beat chance; the exported weights must assemble into a folder ``load_model`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chatir.settings import Settings
from retriever_service.models import starter
from training.starter import build_starter
from training.starter_spec import StarterSpec


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("starter")
    settings = Settings(home=root / "home")
    try:
        result = build_starter(
            StarterSpec.tiny(),
            work=root / "work",
            weights_out=root / "weights",
            settings=settings,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return result, settings


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_losses_fall_and_validation_beats_chance(built):
    result, _ = built
    contrastive = [r["train_loss"] for r in _log(result.work / "contrastive") if r["event"] == "epoch"]
    assert contrastive[-1] < contrastive[0] - 0.1, contrastive
    assert result.contrastive_validation["caption_r@10"] > 100 * 10 / result.contrastive_validation["corpus"]

    dialog = [r["train_loss"] for r in _log(result.work / "dialog") if r["event"] == "epoch"]
    assert len(dialog) == 2 and dialog[-1] < dialog[0], dialog
    hits = result.dialog_validation["hits@10"]
    chance = result.dialog_validation["chance@10"]
    assert len(hits) == 11
    assert np.mean(hits) > chance + 5, (hits, chance)
    assert hits[-1] >= hits[0]  # cumulative: more rounds never lose a hit


def test_exported_weights_assemble_into_a_loadable_model(built, tmp_path, monkeypatch):
    from retriever_service.models import load_model

    result, settings = built
    manifest = json.loads((result.weights.parent / starter.MANIFEST_FILE).read_text())
    assert manifest["spec"] == StarterSpec.tiny().model_dump(mode="json")
    names = list(__import__("safetensors.torch", fromlist=["load_file"]).load_file(result.weights))
    assert any(n.startswith("vision_model.") for n in names)
    assert any(n.startswith("text_model.encoder.layer.5.") for n in names)
    assert not any(n.startswith(("text_model.embeddings.", "text_model.encoder.layer.0.")) for n in names)

    monkeypatch.setattr(starter, "STARTER_WEIGHTS_DIR", result.weights.parent)
    folder = starter.ensure_starter_model(settings, progress=False)
    assert folder == settings.starter_dir
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert starter.ensure_starter_model(settings, progress=False) == folder  # up to date: not rebuilt
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp

    assembled = load_model("starter", device="cpu", settings=settings)
    trained = load_model(str(result.dialog_model), device="cpu", settings=settings)
    texts = ["a red circle in the top left", "four things on a gray background, is it dark? yes"]
    # fp16 shipping changes the embeddings only slightly
    assert np.allclose(assembled.encode_texts(texts), trained.encode_texts(texts), atol=2e-2)
    assert (
        assembled.max_text_tokens == starter.INFERENCE_MAX_TEXT_TOKENS
    )  # trained shorter, reads whole dialogs


def test_damaged_weights_are_refused_with_a_clear_message(built, tmp_path):
    result, settings = built
    copy = tmp_path / "weights"
    copy.mkdir()
    for path in result.weights.parent.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    data = bytearray((copy / starter.WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0xFF
    (copy / starter.WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(starter.StarterError, match="damaged"):
        starter.assemble(copy, tmp_path / "out", settings=settings)
