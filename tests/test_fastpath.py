"""The CPU text fast path (retriever_service/models/fastpath.py): int8 only where it is faithful to fp32.

Faithful = every embedding's cosine to fp32 >= 0.999 and the same top-10 images. Checked on the trained starter
with held-out procedural scenes and their dialogs (not the probe texts the gate itself uses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chatir.settings import Settings
from retriever_service.models.onnx_text import onnx_available
from retriever_service.models.starter import STARTER_WEIGHTS_DIR

TEST_SEED = 4242  # a world seed of its own: neither the starter's training worlds nor the gate's probes


def _top10(queries: np.ndarray, images: np.ndarray) -> list[list[int]]:
    scores = queries @ images.T
    return [sorted(np.argsort(-row, kind="stable")[:10].tolist()) for row in scores]


def _faithful(reference: np.ndarray, candidate: np.ndarray, images: np.ndarray) -> tuple[float, float]:
    """(worst cosine, share of queries with the same top-10 set)."""
    from retriever_service.models.fastpath import probe_cosines

    cosine = float(probe_cosines(reference, candidate).min())
    same = float(
        np.mean([a == b for a, b in zip(_top10(reference, images), _top10(candidate, images), strict=True)])
    )
    return cosine, same


def test_int8_replaces_only_the_text_linears_and_restores(tiny_blip_dir):
    from retriever_service.models import load_model
    from retriever_service.models.fastpath import apply_text_fastpath, quantize_text_int8, restore_modules

    model = load_model(str(tiny_blip_dir), device="cpu")
    texts = ["a red star on a blue background", "two green circles, is it dark? no"]
    images = [np.zeros((32, 32, 3), dtype=np.uint8)]
    from PIL import Image

    pictures = [Image.fromarray(a) for a in images]
    fp32_text, fp32_image = model.encode_texts(texts), model.encode_images(pictures)
    originals = quantize_text_int8(model)
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    text_linears = [m for m in model.model.text_encoder.modules() if isinstance(m, torch.nn.Linear | dynamic)]
    assert text_linears and all(isinstance(m, dynamic) for m in text_linears)
    assert isinstance(model.model.text_proj, dynamic)
    assert not any(isinstance(m, dynamic) for m in model.model.vision_model.modules())
    int8_text = model.encode_texts(texts)
    assert not np.array_equal(int8_text, fp32_text)  # really a different path
    np.testing.assert_allclose(
        model.encode_images(pictures), fp32_image, atol=1e-6
    )  # the index side is untouched
    restore_modules(model, originals)
    np.testing.assert_allclose(model.encode_texts(texts), fp32_text, atol=1e-6)

    report = apply_text_fastpath(model, "fp32")
    assert report.path == "fp32" and model.text_path == "fp32"
    forced = apply_text_fastpath(model, "int8")
    assert forced.path == "int8" and model.text_path == "int8" and forced.min_cosine is not None


def test_auto_keeps_a_path_only_when_the_probes_agree(tiny_blip_dir):
    from retriever_service.models import load_model
    from retriever_service.models.fastpath import MIN_COSINE, PROBE_TEXTS, apply_text_fastpath, probe_cosines

    model = load_model(str(tiny_blip_dir), device="cpu")
    reference = model.encode_texts(PROBE_TEXTS)
    report = apply_text_fastpath(model, "auto")
    assert report.min_cosine is not None and model.text_path == report.path
    after = model.encode_texts(PROBE_TEXTS)
    worst = float(probe_cosines(reference, after).min())
    if report.path != "fp32":
        assert worst >= MIN_COSINE and worst == pytest.approx(report.min_cosine, abs=1e-6)
    else:
        assert report.min_cosine < MIN_COSINE
        np.testing.assert_allclose(after, reference, atol=1e-6)  # rejected: fp32 back in place


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime not installed")
@pytest.mark.parametrize("family", ["clip", "blip", "siglip", "dual"])
def test_onnx_text_path_equals_torch_for_every_family(tiny_model_dirs, family):
    """Single texts and padded batches of mixed lengths (the exported graph has dynamic batch and length)."""
    from retriever_service.models import load_model
    from retriever_service.models.fastpath import PROBE_TEXTS, apply_text_fastpath

    model = load_model(str(tiny_model_dirs[family]), device="cpu")
    texts = [*PROBE_TEXTS, "x", "a " * 300]  # the last one is truncated to the window
    reference = model.encode_texts(texts)
    singles = np.stack([model.encode_texts([t])[0] for t in texts])
    report = apply_text_fastpath(model, "onnx")
    assert report.path == "onnx" and report.min_cosine is not None and report.min_cosine > 0.99999
    assert type(model.__dict__["text_vectors"]).__name__ == "OnnxTextFeatures"
    np.testing.assert_allclose(model.encode_texts(texts), reference, atol=1e-5)
    np.testing.assert_allclose(np.stack([model.encode_texts([t])[0] for t in texts]), singles, atol=1e-5)


@pytest.mark.skipif(not (STARTER_WEIGHTS_DIR / "starter.json").is_file(), reason="no shipped starter weights")
def test_the_cpu_default_is_faithful_on_the_trained_starter(tmp_path):
    """The default (auto) gives the starter's fp32 answers on held-out scenes (cosine >= 0.999, the same top-10
    for every dialog); the gate's verdict on int8 from its probes matches int8's faithfulness on these scenes
    (the probes predict what users would see: for the trained starter int8 is not faithful)."""
    from retriever_service.models import load_model
    from retriever_service.models.fastpath import MIN_COSINE, apply_text_fastpath
    from world.dialogs import dialog_for
    from world.render import render_scene
    from world.scene import sample_scene

    model = load_model("starter", settings=Settings(home=tmp_path, device="cpu"))
    scenes = [sample_scene(TEST_SEED, i) for i in range(200)]
    images = model.encode_images([render_scene(scene) for scene in scenes])
    dialogs = [dialog_for(TEST_SEED, i).upto(r) for i in range(40) for r in (0, 3, 10)]
    reference = model.encode_dialogs(dialogs)

    report = apply_text_fastpath(model, Settings(home=tmp_path).text_fastpath)  # the default: auto
    cosine, same = _faithful(reference, model.encode_dialogs(dialogs), images)
    assert cosine >= MIN_COSINE and same == 1.0, (report, cosine, same)
    if onnx_available():
        assert report.path == "onnx"

    int8 = load_model("starter", settings=Settings(home=tmp_path, device="cpu"))
    probes = apply_text_fastpath(int8, "int8")  # forced: the gate's probe figure, and the int8 model
    int8_cosine, int8_same = _faithful(reference, int8.encode_dialogs(dialogs), images)
    assert probes.min_cosine is not None
    verdict = probes.min_cosine >= MIN_COSINE
    assert verdict == (int8_cosine >= MIN_COSINE and int8_same == 1.0), (probes, int8_cosine, int8_same)


def test_gpu_or_half_models_are_left_alone(tiny_blip_dir):
    from retriever_service.models import load_model
    from retriever_service.models.fastpath import apply_text_fastpath

    model = load_model(str(tiny_blip_dir), device="cpu")
    model.model.to(torch.bfloat16)
    model.dtype = torch.bfloat16
    report = apply_text_fastpath(model, "auto")
    assert report.path == "fp32" and "CPU fp32" in report.reason


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime not installed")
def test_fixed_dialog_evaluation_ranks_are_unchanged_by_the_onnx_path(tiny_model_dirs):
    """The fixed-dialog harness ranks every target the same with the ONNX path as with torch."""
    from pathlib import Path

    from evaluation.data import ImageCorpus, TargetDialog
    from evaluation.harness import evaluate_fixed_dialogs
    from retriever_service.models import load_model
    from retriever_service.models.fastpath import apply_text_fastpath
    from world.dialogs import dialog_for

    rng = np.random.default_rng(3)
    corpus_vectors = rng.standard_normal((400, 16)).astype(np.float32)
    corpus_vectors /= np.linalg.norm(corpus_vectors, axis=1, keepdims=True)
    corpus = ImageCorpus(root=Path("."), paths=tuple(f"img{i:04d}" for i in range(400)))
    items = [
        TargetDialog(img=corpus.paths[i * 7], dialog=dialog_for(TEST_SEED, i, rounds=5)) for i in range(30)
    ]
    ranks = {}
    for path in ("fp32", "onnx"):
        model = load_model(str(tiny_model_dirs["dual"]), device="cpu")
        assert apply_text_fastpath(model, path).path == path
        _, ranks[path] = evaluate_fixed_dialogs(
            model, items, corpus, name=path, rounds=5, corpus_vectors=corpus_vectors, progress=False
        )
    assert ranks["fp32"].shape == (30, 6) and len(np.unique(ranks["fp32"])) > 10
    np.testing.assert_array_equal(ranks["onnx"], ranks["fp32"])


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime is not installed")
def test_the_onnx_export_is_cached_by_weights_and_reused(tiny_blip_dir, tmp_path, monkeypatch):
    """A second start of the same model reads the export from the cache (no export runs); other weights get
    their own file; the cached path gives the torch path's embeddings."""
    from retriever_service.models import load_model, onnx_text

    texts = ["a red star on a blue background", "two green circles, is it dark? no"]
    first = load_model(str(tiny_blip_dir), device="cpu")
    fp32 = first.encode_texts(texts)
    onnx_text.install_onnx_text(first, tmp_path)
    assert len(list(tmp_path.glob("text-*.onnx"))) == 1

    def no_export(model):
        raise AssertionError("exported again although the cache holds this model")

    monkeypatch.setattr(onnx_text, "export_text_onnx", no_export)
    second = load_model(str(tiny_blip_dir), device="cpu")
    onnx_text.install_onnx_text(second, tmp_path)
    np.testing.assert_allclose(second.encode_texts(texts), fp32, atol=1e-5)

    monkeypatch.undo()
    other = load_model(str(tiny_blip_dir), device="cpu")
    with torch.no_grad():
        other.model.text_proj.weight.mul_(1.5)
    assert onnx_text.export_key(other) != onnx_text.export_key(first)
    onnx_text.install_onnx_text(other, tmp_path)
    assert len(list(tmp_path.glob("text-*.onnx"))) == 2


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime is not installed")
@pytest.mark.parametrize("family", ["clip", "dual"])
def test_the_export_traces_eager_attention_and_leaves_the_model_as_it_was(tiny_model_dirs, family):
    """The exported graph computes attention as matmul-softmax-matmul (ONNX Runtime runs that faster than the
    traced scaled_dot_product_attention, whose graph adds a NaN guard to every layer); the model itself keeps
    its attention implementation."""
    import onnx
    from transformers import PreTrainedModel

    from retriever_service.models import load_model, onnx_text

    model = load_model(str(tiny_model_dirs[family]), device="cpu")

    def implementations() -> dict[str, str]:
        return {
            n: m.config._attn_implementation
            for n, m in model.model.named_modules()
            if isinstance(m, PreTrainedModel)
        }

    before = implementations()
    assert "sdpa" in before.values()  # the tiny model has something to switch
    with onnx_text.eager_attention(model.model):
        assert set(implementations().values()) == {"eager"}
    ops = {node.op_type for node in onnx.load_from_string(onnx_text.export_text_onnx(model)[0]).graph.node}
    assert "Softmax" in ops and "IsNaN" not in ops  # traced sdpa guards every layer's softmax against NaN
    assert implementations() == before
