"""retriever_service.models: loading tiny BLIP / CLIP / SigLIP / dual-encoder folders and encoding with them."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chatir.dialog import Dialog, Round
from chatir.errors import ModelNotAvailableError
from chatir.settings import Settings
from retriever_service.models import (
    BlipRetrievalModel,
    ClipRetrievalModel,
    DualEncoderRetrievalModel,
    RetrievalModel,
    SiglipRetrievalModel,
    load_model,
)
from tests.conftest import TINY_EMBED_DIM

FAMILY_CLASSES = {
    "blip": (BlipRetrievalModel, 200),  # ChatIR's 200, below BLIP's 512 positions
    "clip": (ClipRetrievalModel, 77),
    "siglip": (SiglipRetrievalModel, 64),
    "dual": (DualEncoderRetrievalModel, 128),  # min(tokenizer 512, text tower 128)
}
TEXTS = [
    "a dog",
    "a red car parked next to a tree, is it daytime? yes",
    "is the photo in color? yes",
    "two people walking on a beach at sunset with a small brown dog",
    "what color is the car? it is white",
]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", batch_size=4)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.RandomState(0)
    return [Image.fromarray(rng.randint(0, 255, (24 + 9 * i, 40, 3), dtype=np.uint8)) for i in range(5)]


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs, tmp_path_factory) -> dict[str, RetrievalModel]:
    settings = Settings(home=tmp_path_factory.mktemp("home"), batch_size=4)
    return {
        name: load_model(str(path), device="cpu", settings=settings) for name, path in tiny_model_dirs.items()
    }


def long_dialog(n_rounds: int = 12) -> Dialog:
    return Dialog(
        caption="A man rides a red bicycle down a busy street",
        rounds=[
            Round(question=f"is there object number {i} in view?", answer=f"yes, {i} of them")
            for i in range(n_rounds)
        ],
    )


def n_tokens(model: RetrievalModel, text: str) -> int:
    return len(model.tokenizer(text)["input_ids"])


# ------------------------------------------------------------------------------------ loading and encoding
@pytest.mark.parametrize("name", list(FAMILY_CLASSES))
def test_family_is_chosen_from_the_config_with_its_limits(loaded, name):
    model = loaded[name]
    cls, max_tokens = FAMILY_CLASSES[name]
    assert type(model) is cls
    assert model.dim == TINY_EMBED_DIM
    assert model.max_text_tokens == max_tokens
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.model_id.endswith(name)


@pytest.mark.parametrize("name", list(FAMILY_CLASSES))
def test_embeddings_are_normalised_deterministic_and_batch_independent(loaded, images, name):
    model = loaded[name]
    texts = model.encode_texts(TEXTS)
    assert texts.shape == (len(TEXTS), TINY_EMBED_DIM) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    # different texts give different vectors; the same text the same vector
    assert np.abs(texts[0] - texts[1]).max() > 1e-3
    np.testing.assert_allclose(model.encode_texts([TEXTS[1]])[0], texts[1], atol=1e-5)
    np.testing.assert_array_equal(model.encode_texts(TEXTS), texts)

    vectors = model.encode_images(images)
    assert vectors.shape == (len(images), TINY_EMBED_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3  # different pictures, different vectors

    # batched (batch_size 4, padding to the longest) == one at a time
    one_by_one_texts = np.stack([model.encode_texts([t])[0] for t in TEXTS])
    one_by_one_images = np.stack([model.encode_images([im])[0] for im in images])
    np.testing.assert_allclose(one_by_one_texts, texts, atol=2e-5)
    np.testing.assert_allclose(one_by_one_images, vectors, atol=2e-5)
    assert model.encode_texts([]).shape == (0, TINY_EMBED_DIM)


@pytest.mark.parametrize("name", ["blip", "clip", "dual"])
def test_batches_are_formed_by_token_count_not_characters(loaded, name, monkeypatch):
    """Many texts are encoded in batches of the most tokens first (little padding), whatever their length in
    characters; each vector is still the one the text gets alone."""
    model = loaded[name]
    texts = ["a, b, c, d, e, f", "supercalifragilistic", "the dog", "hello", "photographs", "red blue green"]
    counts = [n_tokens(model, t) for t in texts]
    by_chars = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    most_tokens_first = sorted(counts, reverse=True)
    assert [counts[i] for i in by_chars] != most_tokens_first  # characters would order them wrongly
    seen: list[int] = []
    encode = model.text_vectors

    def recording(**tokens: torch.Tensor) -> torch.Tensor:
        seen.extend(tokens["attention_mask"].sum(dim=1).tolist())
        assert tokens["attention_mask"].shape[1] == max(seen[-len(tokens["attention_mask"]) :])  # no excess
        return encode(**tokens)

    monkeypatch.setattr(model, "text_vectors", recording)
    vectors = model.encode_texts(texts)
    assert seen == most_tokens_first
    monkeypatch.undo()
    np.testing.assert_allclose(vectors, np.stack([model.encode_texts([t])[0] for t in texts]), atol=2e-5)


@pytest.mark.parametrize("name", list(FAMILY_CLASSES))
def test_differentiable_text_side_and_image_features(loaded, images, name):
    model = loaded[name]
    tokens = model.tokenize(TEXTS[:2])
    assert tokens["input_ids"].shape[1] <= model.max_text_tokens
    if name == "siglip":  # trained with full-length padding and no attention mask
        assert set(tokens) == {"input_ids"} and tokens["input_ids"].shape[1] == model.max_text_tokens
    features = model.text_features(**tokens)
    assert features.requires_grad and features.shape == (2, model.dim)
    model.model.zero_grad(set_to_none=True)
    features.sum().backward()
    text_params = model.text_parameters()
    assert text_params and all(p.grad is not None for p in text_params)
    trainable_ids = {id(p) for p in text_params}
    vision_params = [p for n, p in model.model.named_parameters() if "vision" in n or "visual" in n]
    assert vision_params and not any(id(p) in trainable_ids for p in vision_params)
    model.model.zero_grad(set_to_none=True)

    with torch.no_grad():
        direct = model.image_features(model.preprocess_images(images[:2])).numpy()
    np.testing.assert_allclose(direct, model.encode_images(images[:2]), atol=1e-6)


def test_blip_matches_transformers_own_contrastive_score(loaded, images):
    """BLIP's ITC path equals BlipForImageTextRetrieval(use_itm_head=False), i.e. transformers' own code."""
    model = loaded["blip"]
    text_vectors = model.encode_texts(TEXTS[:3])
    image_vectors = model.encode_images(images[:2])
    tokens = model.tokenize(TEXTS[:3])
    pixel_values = model.preprocess_images(images[:2])
    with torch.no_grad():
        scores = []
        for i in range(2):  # the model scores one image against each text
            out = model.model(
                input_ids=tokens["input_ids"],
                attention_mask=tokens["attention_mask"],
                pixel_values=pixel_values[i : i + 1].expand(3, -1, -1, -1),
                use_itm_head=False,
            )
            scores.append(out.itm_score[0].numpy())
    np.testing.assert_allclose(image_vectors @ text_vectors.T, np.stack(scores), atol=1e-5)


def test_save_writes_a_folder_that_loads_back_identically(loaded, tmp_path, settings, images):
    model = loaded["clip"]
    model.save(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "chatir.json").read_text())
    assert meta == {"family": "clip", "max_text_tokens": 77, "dim": TINY_EMBED_DIM}
    again = load_model(tmp_path / "saved", device="cpu", settings=settings)
    np.testing.assert_allclose(again.encode_texts(TEXTS), model.encode_texts(TEXTS), atol=1e-6)
    np.testing.assert_allclose(again.encode_images(images), model.encode_images(images), atol=1e-6)


def test_chatir_json_overrides_the_token_limit(tiny_clip_dir, tmp_path, settings):
    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir, folder)
    (folder / "chatir.json").write_text(json.dumps({"family": "clip", "max_text_tokens": 20, "dim": 16}))
    model = load_model(str(folder), device="cpu", settings=settings)
    assert model.max_text_tokens == 20
    assert model.tokenize([TEXTS[1]])["input_ids"].shape[1] == 20


# ------------------------------------------------------------------------------------ dialog text
def test_short_dialog_text_is_exactly_chatirs_join(loaded):
    dialog = Dialog(caption="a dog on a couch", rounds=[Round(question="is it red?", answer="no")])
    for model in loaded.values():
        assert model.dialog_text(dialog) == "a dog on a couch, is it red? no" == dialog.text(", ")


def test_keep_caption_keeps_the_caption_and_the_newest_rounds(loaded):
    model = loaded["clip"]  # 77 tokens
    dialog = long_dialog()
    parts = dialog.parts()
    assert n_tokens(model, dialog.text()) > model.max_text_tokens
    text = model.dialog_text(dialog)
    assert n_tokens(model, text) <= model.max_text_tokens
    kept = next(k for k in range(len(parts) - 1, 0, -1) if text == ", ".join([parts[0], *parts[-k:]]))
    assert 1 <= kept < len(parts) - 1
    # maximal: one more (older) round would not fit
    assert n_tokens(model, ", ".join([parts[0], *parts[-(kept + 1) :]])) > model.max_text_tokens
    np.testing.assert_allclose(model.encode_dialogs([dialog])[0], model.encode_texts([text])[0], atol=1e-6)


def test_keep_caption_cuts_a_caption_that_alone_overflows(loaded):
    model = loaded["clip"]
    caption = "a very long caption about a crowded market " * 6
    dialog = Dialog(caption=caption, rounds=[Round(question="is it day?", answer="yes")])
    text = model.dialog_text(dialog)
    assert caption.startswith(text) and len(text) > 20
    assert n_tokens(model, text) <= model.max_text_tokens
    assert n_tokens(model, caption[: len(text) + 2]) > model.max_text_tokens - 1


def test_tail_truncation_cuts_the_end_like_chatir_training(loaded):
    model = loaded["blip"]
    model.max_text_tokens, model.truncation = 40, "tail"
    try:
        dialog = long_dialog()
        text = model.dialog_text(dialog)
        assert dialog.text().startswith(text)
        full_truncated = model.tokenizer(dialog.text(), truncation=True, max_length=40)["input_ids"]
        assert model.tokenizer(text)["input_ids"] == full_truncated  # exactly ChatIR's tokens
    finally:
        model.max_text_tokens, model.truncation = 200, "keep_caption"


def test_settings_choose_separator_and_policy(tiny_clip_dir, tmp_path):
    dialog = long_dialog(3)
    model = load_model(
        str(tiny_clip_dir),
        device="cpu",
        settings=Settings(home=tmp_path, dialog_separator=" [SEP] ", truncation="tail"),
    )
    assert model.truncation == "tail"
    assert dialog.text(" [SEP] ").startswith(model.dialog_text(dialog))
    assert " [SEP] " in model.dialog_text(dialog)


def test_token_window_can_be_set_but_not_past_the_model(tiny_clip_dir, tmp_path):
    from chatir.errors import ModelNotAvailableError

    default = load_model(str(tiny_clip_dir), device="cpu", settings=Settings(home=tmp_path))
    narrow = load_model(
        str(tiny_clip_dir), device="cpu", settings=Settings(home=tmp_path, max_text_tokens=12)
    )
    assert narrow.max_text_tokens == 12 != default.max_text_tokens
    counts = narrow.tokenizer([narrow.dialog_text(long_dialog(6))])["input_ids"]
    assert len(counts[0]) <= 12
    with pytest.raises(ModelNotAvailableError, match="CHATIR_MAX_TEXT_TOKENS=4000 is longer"):
        load_model(str(tiny_clip_dir), device="cpu", settings=Settings(home=tmp_path, max_text_tokens=4000))


def test_real_chatir_dialogs_fit_the_token_limits(loaded, chatir_dialog_entries):
    sample = [Dialog.from_chatir(entries) for entries in chatir_dialog_entries[::25]]
    for name in ("blip", "clip"):
        model = loaded[name]
        texts = [model.dialog_text(d) for d in sample]
        counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
        assert max(counts) <= model.max_text_tokens
        for dialog, text in zip(sample, texts, strict=True):
            assert text.startswith(dialog.caption.strip()[:20])
            full = dialog.text()
            if n_tokens(model, full) <= model.max_text_tokens:
                assert text == full
            else:  # newest round kept
                assert text.endswith(dialog.parts()[-1]) or text == dialog.caption.strip()[: len(text)]
    # with BERT's vocabulary and ChatIR's 200 tokens, almost every real dialog (11 parts) fits untouched
    blip = loaded["blip"]
    fitting = sum(blip.dialog_text(d) == d.text() for d in sample)
    assert fitting >= 0.95 * len(sample)


# ------------------------------------------------------------------------------------ errors and sources
def test_unknown_hub_id_fails_fast_with_the_name_and_a_remedy(settings):
    started = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as caught:
        load_model("no-such-org/no-such-model-xyz", settings=settings)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "no-such-org/no-such-model-xyz" in message
    assert "chatir models pull no-such-org/no-such-model-xyz" in message and "CHATIR_MODEL" in message
    assert "\n" not in message


def test_unreachable_hub_is_reported_without_retry_storms(settings, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    started = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="cannot be reached"):
        load_model("some-org/some-model", settings=settings)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "name", ["/definitely/not/here/model", "./typo-model-folder", "bad name with spaces"]
)
def test_missing_local_folder_names_the_model(name, settings):
    with pytest.raises(ModelNotAvailableError) as caught:
        load_model(name, settings=settings)
    assert name in str(caught.value)


def test_folder_without_config_or_with_a_file(tmp_path, settings):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match=r"no config\.json"):
        load_model(str(tmp_path / "empty"), settings=settings)
    (tmp_path / "weights.ckpt").write_bytes(b"\0")
    with pytest.raises(ModelNotAvailableError, match="convert-checkpoint"):
        load_model(str(tmp_path / "weights.ckpt"), settings=settings)


def test_unsupported_model_type_is_refused(tmp_path, settings):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelNotAvailableError, match="model_type 'bert'"):
        load_model(str(tmp_path / "bert"), settings=settings)


def test_weights_of_another_architecture_are_not_silently_random(tiny_blip_dir, tmp_path, settings):
    """A BlipModel checkpoint has no text_encoder / text_proj: refuse instead of using random weights."""
    from transformers import BlipConfig, BlipModel

    config = BlipConfig.from_pretrained(tiny_blip_dir)
    BlipModel(config).save_pretrained(tmp_path / "blip-model")
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tiny_blip_dir / name, tmp_path / "blip-model" / name)
    with pytest.raises(ModelNotAvailableError, match=r"lacks .* weights"):
        load_model(str(tmp_path / "blip-model"), settings=settings)


def test_missing_tokenizer_says_how_to_add_it(tiny_clip_dir, tmp_path, settings):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(tiny_clip_dir / name, folder / name)
    with pytest.raises(ModelNotAvailableError, match="tokenizer"):
        load_model(str(folder), settings=settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tiny_clip_dir, settings):
    with pytest.raises(ModelNotAvailableError, match="CUDA is not available"):
        load_model(str(tiny_clip_dir), device="cuda", settings=settings)


def test_starter_resolves_to_the_starter_folder(tiny_clip_dir, tmp_path, monkeypatch):
    settings = Settings(home=tmp_path / "home")
    calls = []

    def ensure_starter_model(given: Settings) -> Path:  # plays the starter builder: writes the folder once
        calls.append(given)
        if not given.starter_dir.exists():
            shutil.copytree(tiny_clip_dir, given.starter_dir)
        return given.starter_dir

    from retriever_service.models import starter

    monkeypatch.setattr(starter, "ensure_starter_model", ensure_starter_model)

    model = load_model("starter", device="cpu", settings=settings)
    assert calls == [settings] and model.model_id == "starter" and model.dim == TINY_EMBED_DIM
    stamp = (settings.starter_dir / "config.json").stat().st_mtime_ns
    load_model("starter", device="cpu", settings=settings)  # asks again (it checks freshness), not rebuilt
    assert len(calls) == 2 and (settings.starter_dir / "config.json").stat().st_mtime_ns == stamp


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_fp16_and_agrees_with_cpu(tiny_model_dirs, loaded, images, tmp_path):
    for name, path in tiny_model_dirs.items():
        gpu = load_model(str(path), device="auto", settings=Settings(home=tmp_path, batch_size=4))
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float16
        texts, vectors = gpu.encode_texts(TEXTS), gpu.encode_images(images)
        assert texts.dtype == np.float32 and vectors.dtype == np.float32
        np.testing.assert_allclose(texts, loaded[name].encode_texts(TEXTS), atol=2e-2)
        np.testing.assert_allclose(vectors, loaded[name].encode_images(images), atol=2e-2)
