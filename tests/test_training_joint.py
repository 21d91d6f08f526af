"""Starter v2's joint recipe at tiny size, end to end on CPU: stream -> train -> export -> assemble -> load.

Also the pieces: batches hold fresh scenes whose near misses the dialog rules out, length-sorted text encoding
equals plain encoding, and a finished run is not trained again.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from chatir.settings import Settings
from retriever_service.models import starter
from training.joint import TRAINED_FILE, encode_by_length, learning_rate_factor, read_log
from training.starter import build_starter
from training.starter_spec import StarterSpec
from training.world_stream import StreamConfig, make_batch, sample_example
from world.perturb import consistent


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("joint")
    settings = Settings(home=root / "home")
    try:
        result = build_starter(
            StarterSpec.joint_tiny(),
            work=root / "work",
            weights_out=root / "weights",
            settings=settings,
            progress=False,
            workers=0,
        )
    finally:
        torch.set_num_threads(threads)
    return result, settings


def test_joint_build_logs_trains_and_ships_a_loadable_model(built, monkeypatch):
    from retriever_service.models import load_model

    result, settings = built
    log = read_log(result.work / "joint")
    steps = [r for r in log if "loss_t2i" in r]
    assert steps and all(np.isfinite(r["loss_t2i"]) for r in steps)
    final = [r for r in log if r.get("final")]
    assert len(final) == 1 and set(final[0]["validation"]) >= {"hits10_r0", "hits10_r10"}
    manifest = json.loads((result.weights.parent / starter.MANIFEST_FILE).read_text())
    assert manifest["spec"]["recipe"] == "joint"
    assert manifest["build"]["dialog_validation"] == final[0]["validation"]

    monkeypatch.setattr(starter, "STARTER_WEIGHTS_DIR", result.weights.parent)
    model = load_model("starter", device="cpu", settings=settings)
    assert model.dim == StarterSpec.joint_tiny().projection_dim
    vectors = model.encode_texts(["a red star on blue", "is there a circle? no"])
    assert vectors.shape == (2, model.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)


def test_a_finished_joint_stage_is_not_trained_again(built):
    from training.joint import train_joint

    result, _ = built
    trained = result.work / "joint" / TRAINED_FILE
    stamp = trained.stat().st_mtime_ns
    assert (
        train_joint(StarterSpec.joint_tiny(), result.work / "joint", device="cpu", workers=0, progress=False)
        == trained
    )
    assert trained.stat().st_mtime_ns == stamp


def test_stream_examples_hold_near_misses_the_dialog_rules_out():
    config = StreamConfig(batch_size=4, hard_negatives=2, image_size=32, low_res=0.0)
    rng = random.Random(5)
    for _ in range(60):
        text, scene, negatives = sample_example(71, config, rng)
        assert text and len(negatives) == 2
        assert all(n != scene for n in negatives)


def test_stream_batches_have_targets_first_and_ground_truth():
    from transformers import AutoTokenizer

    from retriever_service.models.starter import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    config = StreamConfig(batch_size=5, hard_negatives=1, image_size=32, low_res=0.0)
    batch = make_batch(71, config, random.Random(0), tokenizer)
    assert batch.images.shape == (10, 3, 32, 32) and batch.images.dtype == torch.uint8
    assert batch.attributes.shape[0] == 10 and batch.tokens["input_ids"].shape[0] == 5
    assert len(set(batch.texts)) == 5


def test_length_sorted_text_encoding_equals_plain_encoding():
    from training.world_stream import make_batch as batch_of

    model = starter.new_starter_model(StarterSpec.joint_tiny())
    batch = batch_of(71, StarterSpec.joint_tiny().joint.stream, random.Random(1), model.tokenizer)
    tokens = {k: v for k, v in batch.tokens.items() if k in model.text_input_names}
    with torch.no_grad():
        assert torch.allclose(model.text_features(**tokens), encode_by_length(model, tokens, 3), atol=1e-5)


def test_learning_rate_warms_up_then_follows_steps_or_time():
    stage = StarterSpec.joint_tiny().joint.model_copy(
        update={"steps": 100, "warmup_steps": 10, "time_budget_s": 50}
    )
    assert learning_rate_factor(0, stage, 0) == pytest.approx(0.1)
    assert learning_rate_factor(9, stage, 0) == pytest.approx(1.0)  # end of warm-up
    assert learning_rate_factor(50, stage, 0) == pytest.approx(0.51)
    assert learning_rate_factor(10, stage, 25) == pytest.approx(0.51)  # half the time budget: half-way
    assert learning_rate_factor(99, stage, 50) == pytest.approx(0.02)


def test_near_misses_in_batches_are_ruled_out_by_their_own_dialog():
    from training.world_stream import _near_miss
    from world.dialogs import make_dialog
    from world.language import make_caption
    from world.scene import sample_scene

    for index in range(30):
        scene = sample_scene(71, index)
        rng = random.Random(index)
        caption = make_caption(scene, rng)
        dialog = make_dialog(scene, caption.text, rng, rounds=3)
        facts = [(r.question, r.answer) for r in dialog.rounds]
        near = _near_miss(71, scene, caption, facts, rng)
        assert not consistent(near, caption, facts)


def test_joint_training_starts_from_given_weights_and_refuses_foreign_ones(built, tmp_path):
    from safetensors.torch import save_file

    from training.joint import train_joint

    result, _ = built
    start = result.work / "joint" / TRAINED_FILE
    spec = StarterSpec.joint_tiny()
    spec.joint.steps = 1
    out = train_joint(spec, tmp_path / "again", device="cpu", workers=0, init_weights=start, progress=False)
    assert out.is_file() and any(r.get("final") for r in read_log(tmp_path / "again"))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"vision_model.no_such_layer.weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="does not fit"):
        train_joint(spec, tmp_path / "foreign", device="cpu", workers=0, init_weights=foreign, progress=False)


def test_the_joint_recipe_starts_from_the_staged_recipe_of_the_same_architecture():
    from training.starter_spec import staged_base_spec

    spec = StarterSpec.joint_recipe()
    base = staged_base_spec(spec)
    assert spec.joint.init == "staged" and base.recipe == "staged"
    assert (base.vision, base.projection_dim, base.trained_text_layers) == (
        spec.vision,
        spec.projection_dim,
        spec.trained_text_layers,
    )


def test_code_losses_are_zero_only_for_the_exact_code_and_the_posterior():
    from training.joint import code_losses

    attributes = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    prior = torch.zeros(3)
    perfect_image = attributes * 2 - 1
    confident_text = (attributes[:1] * 2 - 1) * 30  # a dialog that tells all three attributes of target 0
    loss_text, loss_image = code_losses(confident_text, perfect_image, attributes, 1, prior)
    assert float(loss_image) == 0.0 and float(loss_text) < 1e-6
    # a dialog that tells nothing costs exactly the prior's cross-entropy (log 2 per attribute at p = 0.5)
    silent, _ = code_losses(torch.zeros(1, 3), perfect_image, attributes, 1, prior)
    assert float(silent) == pytest.approx(float(np.log(2)), rel=1e-5)
    # the dot product of a text "log-likelihood ratio" with the +/-1 codes ranks the image that fits first
    assert (confident_text @ perfect_image.T).argmax() == 0


def test_the_code_recipe_trains_a_model_whose_embedding_is_the_attribute_code(tmp_path):
    from training.joint import train_joint
    from world.attributes import attribute_names

    spec = StarterSpec.code_tiny()
    trained = train_joint(spec, tmp_path / "code", device="cpu", workers=0, progress=False)
    log = read_log(tmp_path / "code")
    assert all(np.isfinite(r["loss_t2i"]) and np.isfinite(r["loss_attr"]) for r in log if "loss_t2i" in r)
    shapes = {name: tuple(t.shape) for name, t in
              __import__("safetensors.torch", fromlist=["load_file"]).load_file(trained).items()}  # fmt: skip
    assert (
        shapes["visual_projection.weight"][0] == shapes["text_projection.weight"][0] == len(attribute_names())
    )
    with pytest.raises(ValueError, match="projection_dim"):
        train_joint(spec.model_copy(update={"projection_dim": 32}), tmp_path / "bad", device="cpu", workers=0,
                    progress=False)  # fmt: skip
