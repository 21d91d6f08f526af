"""Import of a ChatIR / salesforce-BLIP checkpoint into transformers, round-tripped through load_model.

A tiny BlipForImageTextRetrieval (random weights) is written in the ORIGINAL salesforce/BLIP key layout
by an inverse mapping written here independently of the converter, then converted and loaded back.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from chatir.settings import Settings
from retriever_service.models import load_model
from retriever_service.models.convert_blip import CheckpointConversionError, convert_chatir_checkpoint
from tests.conftest import _blip_tokenizer

TEXTS = ["a red bus on a bridge", "a bedroom with posters, is it clean? no, is there a chair? yes", "a cat"]


def hf_to_salesforce(key: str) -> str:
    """transformers BLIP key -> salesforce/BLIP ``blip_itm`` key (the inverse of the conversion)."""
    vision = {
        "vision_model.embeddings.class_embedding": "visual_encoder.cls_token",
        "vision_model.embeddings.position_embedding": "visual_encoder.pos_embed",
    }
    if key in vision:
        return vision[key]
    key = key.replace("vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj.")
    key = key.replace("vision_model.post_layernorm.", "visual_encoder.norm.")
    match = re.match(r"vision_model\.encoder\.layers\.(\d+)\.(.*)", key)
    if match:
        block, rest = match.groups()
        rest = (
            rest.replace("layer_norm1.", "norm1.")
            .replace("layer_norm2.", "norm2.")
            .replace("self_attn.qkv.", "attn.qkv.")
            .replace("self_attn.projection.", "attn.proj.")
        )
        return f"visual_encoder.blocks.{block}.{rest}"
    assert not key.startswith("vision_model."), key
    return key  # text_encoder.*, vision_proj, text_proj, itm_head


@pytest.fixture(scope="module")
def source_model(bert_uncased_dir):
    """A tiny BLIP with BLIP-base's shapes in miniature: 64-dim heads, timm's LayerNorm eps, 512 positions."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    tokenizer = _blip_tokenizer(bert_uncased_dir)
    tower = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1, "intermediate_size": 96}
    config = BlipConfig(
        vision_config={**tower, "image_size": 32, "patch_size": 16, "layer_norm_eps": 1e-6},
        text_config={
            **tower,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 512,
            "encoder_hidden_size": 64,
        },
        image_text_hidden_size=24,
    )
    torch.manual_seed(1)
    model = BlipForImageTextRetrieval(config).eval()
    return model, tokenizer


def salesforce_checkpoint(model, *, with_extras: bool = True) -> dict[str, torch.Tensor]:
    state = {hf_to_salesforce(k): v.clone() for k, v in model.state_dict().items()}
    assert "visual_encoder.blocks.1.attn.qkv.weight" in state and "visual_encoder.cls_token" in state
    if with_extras:  # what blip_retrieval also saves: momentum encoders, queues, temperature, position ids
        for key in list(state):
            head, _, rest = key.partition(".")
            if head in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
                state[f"{head}_m.{rest}"] = torch.randn_like(state[key])
        state["image_queue"] = torch.randn(24, 57)
        state["text_queue"] = torch.randn(24, 57)
        state["idx_queue"] = torch.zeros(1, 57, dtype=torch.long)
        state["ptr_queue"] = torch.zeros(1, dtype=torch.long)
        state["temp"] = torch.tensor(0.07)
        state["text_encoder.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    return state


def reference_embeddings(model, tokenizer, images):
    """Embeddings straight from the source model, as salesforce/BLIP computes ITC features."""
    tokens = tokenizer(TEXTS, padding="longest", truncation=True, max_length=200, return_tensors="pt")
    pixels = torch.stack(
        [
            (
                torch.from_numpy(
                    np.asarray(im.convert("RGB").resize((32, 32), Image.BICUBIC), dtype=np.float32) / 255
                ).permute(2, 0, 1)
                - torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
            )
            / torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
            for im in images
        ]
    )
    with torch.no_grad():
        text_hidden = model.text_encoder(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).last_hidden_state
        texts = torch.nn.functional.normalize(model.text_proj(text_hidden[:, 0]), dim=-1)
        image_hidden = model.vision_model(pixel_values=pixels).last_hidden_state
        vectors = torch.nn.functional.normalize(model.vision_proj(image_hidden[:, 0]), dim=-1)
    return texts.numpy(), vectors.numpy()


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(3)
    return [Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.mark.parametrize("wrapper", ["model", "state_dict", None])
def test_converted_checkpoint_gives_the_same_embeddings(source_model, images, tmp_path, wrapper):
    model, tokenizer = source_model
    state = salesforce_checkpoint(model)
    # None: a DDP-saved bare state dict
    payload = (
        {f"module.{k}": v for k, v in state.items()} if wrapper is None else {wrapper: state, "epoch": 3}
    )
    torch.save(payload, tmp_path / "chatir_weights.ckpt")

    out = convert_chatir_checkpoint(tmp_path / "chatir_weights.ckpt", tmp_path / "converted")
    meta = json.loads((out / "chatir.json").read_text())
    assert meta["family"] == "blip" and meta["max_text_tokens"] == 200 and meta["dim"] == 24
    assert meta["truncation"] == "tail"

    loaded = load_model(str(out), device="cpu", settings=Settings(home=tmp_path / "home"))
    assert loaded.max_text_tokens == 200 and loaded.dim == 24
    assert loaded.truncation == "tail"  # evaluated the way ChatIR trained it, unless chosen explicitly
    expected_texts, expected_images = reference_embeddings(model, tokenizer, images)
    np.testing.assert_allclose(loaded.encode_texts(TEXTS), expected_texts, atol=1e-5)
    np.testing.assert_allclose(loaded.encode_images(images), expected_images, atol=1e-5)
    # the ITM head survives too
    torch.testing.assert_close(loaded.model.itm_head.weight, model.itm_head.weight)


def test_inferred_config_is_blip_base_shaped(source_model, tmp_path):
    model, _ = source_model
    torch.save({"model": salesforce_checkpoint(model)}, tmp_path / "c.ckpt")
    out = convert_chatir_checkpoint(tmp_path / "c.ckpt", tmp_path / "converted")
    config = json.loads((out / "config.json").read_text())
    vision, text = config["vision_config"], config["text_config"]
    assert (vision["image_size"], vision["patch_size"], vision["num_hidden_layers"]) == (32, 16, 2)
    assert vision["layer_norm_eps"] == 1e-6 and vision["num_attention_heads"] == 1
    assert (text["vocab_size"], text["max_position_embeddings"], text["num_hidden_layers"]) == (30524, 512, 2)
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 32, "width": 32} and processor["resample"] == 3  # bicubic


def test_explicit_settings_override_the_recorded_truncation(source_model, tmp_path):
    model, _ = source_model
    torch.save({"model": salesforce_checkpoint(model, with_extras=False)}, tmp_path / "c.ckpt")
    out = convert_chatir_checkpoint(tmp_path / "c.ckpt", tmp_path / "converted", base_config=model.config)
    loaded = load_model(str(out), device="cpu", settings=Settings(home=tmp_path, truncation="keep_caption"))
    assert loaded.truncation == "keep_caption"


def test_not_a_blip_checkpoint(tmp_path):
    torch.save({"model": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointConversionError, match="does not look like a BLIP checkpoint"):
        convert_chatir_checkpoint(tmp_path / "other.ckpt", tmp_path / "out")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointConversionError, match="not a readable PyTorch checkpoint"):
        convert_chatir_checkpoint(tmp_path / "garbage.ckpt", tmp_path / "out")
    with pytest.raises(CheckpointConversionError, match="does not exist"):
        convert_chatir_checkpoint(tmp_path / "missing.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_config_is_reported_not_loaded_partially(source_model, tmp_path):
    model, _ = source_model
    torch.save({"model": salesforce_checkpoint(model, with_extras=False)}, tmp_path / "c.ckpt")
    wrong = model.config.__class__.from_dict(model.config.to_dict())
    wrong.text_config.intermediate_size = 80  # e.g. a config of another model size
    with pytest.raises(CheckpointConversionError, match="does not match the BLIP config"):
        convert_chatir_checkpoint(tmp_path / "c.ckpt", tmp_path / "out", base_config=wrong)
    assert not (tmp_path / "out").exists()


def test_pickled_objects_need_explicit_trust(source_model, tmp_path):
    model, _ = source_model
    payload = {"model": salesforce_checkpoint(model, with_extras=False), "args": argparse.Namespace(lr=1e-5)}
    torch.save(payload, tmp_path / "c.ckpt")
    with pytest.raises(CheckpointConversionError, match="--trust-pickle"):
        convert_chatir_checkpoint(tmp_path / "c.ckpt", tmp_path / "out")
    out = convert_chatir_checkpoint(tmp_path / "c.ckpt", tmp_path / "out", trust_pickle=True)
    assert (out / "model.safetensors").is_file()
