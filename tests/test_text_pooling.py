"""Clause pooling: a model whose ``chatir.json`` says ``"text_pooling": "clauses"`` reads each clause of a dialog
alone and adds the clause vectors (the scene-code starter's text side is trained that way)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from chatir.dialog import Dialog, Round
from chatir.errors import ModelNotAvailableError
from chatir.settings import Settings
from retriever_service.models import load_model
from retriever_service.models.dialog_text import split_clauses
from retriever_service.models.onnx_text import onnx_available

DIALOG = Dialog(
    caption="a red star on a blue background",
    rounds=[
        Round(question="is there a circle?", answer="no"),
        Round(question="what colour is the star?", answer="red"),
        Round(question="where is the star?", answer="i don't know"),
    ],
)


@pytest.fixture(scope="module")
def clause_dir(tiny_model_dirs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clauses") / "dual"
    shutil.copytree(tiny_model_dirs["dual"], folder)
    meta_file = folder / "chatir.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    meta_file.write_text(json.dumps({**meta, "text_pooling": "clauses"}))
    return folder


@pytest.fixture(scope="module")
def model(clause_dir, tmp_path_factory):
    return load_model(str(clause_dir), device="cpu", settings=Settings(home=tmp_path_factory.mktemp("home")))


def _raw(model, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        return model._text_embeddings(model.tokenize(texts)).float().numpy()


def test_split_clauses_drops_empty_pieces_and_keeps_the_rest():
    assert split_clauses("a red star, is there a circle? no, , what colour? red ") == [
        "a red star",
        "is there a circle? no",
        "what colour? red",
    ]
    assert split_clauses("a red star") == ["a red star"]
    assert split_clauses(" , ") == []


def test_a_dialog_is_the_normalised_sum_of_its_clause_vectors(model):
    assert model.text_pooling == "clauses"
    text = model.dialog_text(DIALOG)
    assert text == ", ".join(DIALOG.parts())
    clauses = split_clauses(text)
    expected = _raw(model, clauses).sum(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(model.encode_texts([text])[0], expected, atol=1e-5)
    np.testing.assert_allclose(model.encode_dialogs([DIALOG])[0], expected, atol=1e-5)
    # a batch of dialogs sharing clauses gives each dialog the same vector as alone
    texts = [text, clauses[0], f"{clauses[1]}, {clauses[0]}"]
    together = model.encode_texts(texts)
    alone = np.stack([model.encode_texts([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_clause_pooling_never_drops_a_round_of_a_long_dialog(model):
    """The joined text may be far past the token window: each clause is read within it, and none is lost."""
    rounds = [Round(question=f"is there a shape number {i} in the picture?", answer="no") for i in range(50)]
    dialog = Dialog(caption="a red star", rounds=rounds)
    text = model.dialog_text(dialog)
    assert model.tokenize([text])["input_ids"].shape[1] == model.max_text_tokens  # joined, it would be cut
    assert split_clauses(text) == dialog.parts()
    expected = _raw(model, dialog.parts()).sum(axis=0)  # every clause, the oldest rounds included
    np.testing.assert_allclose(
        model.encode_dialogs([dialog])[0], expected / np.linalg.norm(expected), atol=1e-5
    )


def test_pooling_is_kept_when_the_model_is_saved_and_loaded(model, tmp_path):
    model.save(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "chatir.json").read_text())["text_pooling"] == "clauses"
    again = load_model(str(tmp_path / "saved"), device="cpu", settings=Settings(home=tmp_path / "home"))
    assert again.text_pooling == "clauses"
    np.testing.assert_allclose(again.encode_dialogs([DIALOG]), model.encode_dialogs([DIALOG]), atol=1e-6)


def test_joined_models_are_unchanged(tiny_model_dirs, tmp_path):
    joined = load_model(str(tiny_model_dirs["dual"]), device="cpu", settings=Settings(home=tmp_path))
    assert joined.text_pooling == "joined"
    text = joined.dialog_text(DIALOG)
    expected = _raw(joined, [text])[0]
    np.testing.assert_allclose(joined.encode_texts([text])[0], expected / np.linalg.norm(expected), atol=1e-5)


def test_an_unknown_pooling_is_a_clear_load_error(clause_dir, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(clause_dir, folder)
    meta = json.loads((folder / "chatir.json").read_text())
    (folder / "chatir.json").write_text(json.dumps({**meta, "text_pooling": "mean-of-words"}))
    with pytest.raises(ModelNotAvailableError, match="text pooling 'mean-of-words'"):
        load_model(str(folder), device="cpu", settings=Settings(home=tmp_path / "home"))


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime not installed")
def test_the_onnx_path_pools_the_same_clause_vectors(clause_dir, tmp_path):
    from retriever_service.models.fastpath import apply_text_fastpath

    model = load_model(str(clause_dir), device="cpu", settings=Settings(home=tmp_path))
    texts = [model.dialog_text(DIALOG), "a red star", "is there a circle? no, i don't know"]
    reference = model.encode_texts(texts)
    assert apply_text_fastpath(model, "onnx").path == "onnx"
    np.testing.assert_allclose(model.encode_texts(texts), reference, atol=1e-5)


def test_each_clause_is_encoded_once_across_calls(clause_dir, tmp_path, monkeypatch):
    """A turn encodes only its new round; the earlier ones come from the clause cache."""
    model = load_model(str(clause_dir), device="cpu", settings=Settings(home=tmp_path))
    encoded: list[list[str]] = []
    original = model._encode_vectors
    monkeypatch.setattr(
        model, "_encode_vectors", lambda texts: encoded.append(list(texts)) or original(texts)
    )
    first = model.encode_dialogs([DIALOG.upto(2)])
    longer = model.encode_dialogs([DIALOG])
    assert encoded == [DIALOG.parts()[:3], [DIALOG.parts()[3]]]
    model.clear_text_cache()
    np.testing.assert_allclose(model.encode_dialogs([DIALOG.upto(2)]), first, atol=1e-6)
    np.testing.assert_allclose(model.encode_dialogs([DIALOG]), longer, atol=1e-6)
    assert encoded[2] == DIALOG.parts()[:3] and encoded[3] == [DIALOG.parts()[3]]


def test_changing_the_text_path_forgets_the_cached_clauses(clause_dir, tmp_path):
    from retriever_service.models.fastpath import quantize_text_int8, restore_modules

    model = load_model(str(clause_dir), device="cpu", settings=Settings(home=tmp_path))
    text = model.dialog_text(DIALOG)
    fp32 = model.encode_texts([text])
    originals = quantize_text_int8(model)
    int8 = model.encode_texts([text])
    assert not np.array_equal(int8, fp32)  # computed by the int8 layers, not served from the fp32 cache
    restore_modules(model, originals)
    np.testing.assert_array_equal(model.encode_texts([text]), fp32)  # and not the int8 vectors afterwards
