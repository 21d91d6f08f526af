"""Captions at index time (CHATIR_CAPTIONER): a tiny BLIP captioning model built from a config, loaded through
the same path as a hub model; captions are stored, sent with hits over HTTP, shown to the LLM questioner, and
backfilled for images indexed before without re-embedding them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from agent.questioners.prompts import render_candidates
from agent.vectors import unpack
from chatir.schemas import PUBLIC, IndexRequest
from chatir.settings import Settings


@pytest.fixture(scope="module")
def captioner_dir(tiny_blip_dir, tmp_path_factory):
    from transformers import BlipConfig, BlipForConditionalGeneration

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("captioner") / "tiny-blip-captioning"
    BlipForConditionalGeneration(BlipConfig.from_pretrained(tiny_blip_dir)).save_pretrained(folder)
    for item in tiny_blip_dir.iterdir():  # tokenizer and image processor
        if item.name not in ("config.json", "model.safetensors"):
            shutil.copy(item, folder / item.name)
    return folder


def _pictures(folder, n, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_images_get_captions_that_reach_hits_and_the_llm_prompt(tmp_path, tiny_clip_dir, captioner_dir):
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    settings = Settings(
        home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu", captioner=str(captioner_dir)
    )
    folder = _pictures(tmp_path / "pics", 3, seed=1)
    with RetrieverService.open(settings) as service:
        report = service.run_index(IndexRequest(paths=[str(folder)], allowed=[PUBLIC]), progress=False)
        assert report.added == 3 and report.captioned == 3
        client = TestClient(create_app(settings, service))
        hits = client.post("/v1/search", json={"dialog": {"caption": "a picture"}, "k": 3}).json()["hits"]
    assert len(hits) == 3 and all(isinstance(h["caption"], str) and h["caption"] for h in hits)
    from chatir.schemas import Hit

    prompt = render_candidates([Hit.model_validate(h) for h in hits])
    assert prompt.count("looks like: ") == 3


def test_rerunning_index_with_a_captioner_backfills_without_re_embedding(
    tmp_path, tiny_clip_dir, captioner_dir
):
    from retriever_service.service import RetrieverService

    plain = Settings(home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu")
    folder = _pictures(tmp_path / "pics", 4, seed=2)
    with RetrieverService.open(plain) as service:
        first = service.run_index(IndexRequest(paths=[str(folder)], allowed=[PUBLIC]), progress=False)
        assert first.added == 4 and first.captioned == 0
        assert all(r.caption is None for r in service.index.iter_records())
    with RetrieverService.open(plain.model_copy(update={"captioner": str(captioner_dir)})) as service:
        again = service.run_index(IndexRequest(paths=[str(folder)], allowed=[PUBLIC]), progress=False)
        assert again.added == 0 and again.unchanged == 4  # nothing embedded again ...
        assert again.captioned == 4  # ... but every image captioned
        assert all(r.caption for r in service.index.iter_records())
        assert service.run_index(IndexRequest(paths=[str(folder)]), progress=False).captioned == 0  # once


def test_a_missing_captioner_is_a_clear_error(tmp_path, tiny_clip_dir):
    from chatir.errors import ModelNotAvailableError
    from retriever_service.service import RetrieverService

    settings = Settings(
        home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu", captioner=str(tmp_path / "no")
    )
    with pytest.raises(ModelNotAvailableError, match="CHATIR_CAPTIONER"):
        RetrieverService.open(settings)


def _caption(service, image_id, text):
    record = service.index.get(image_id)
    service.index.update(record.model_copy(update={"caption": text}))


def test_captions_are_searchable_as_text_within_the_callers_scope(tmp_path, tiny_clip_dir):
    """An image the embedding ranks last enters the top 3 through its caption's words; its score stays its
    cosine; a caption outside the caller's scope, a denied answer and the setting turned off bring nothing."""
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    settings = Settings(home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu", caption_search=True)
    public = _pictures(tmp_path / "public", 10, seed=3)
    private = _pictures(tmp_path / "private", 3, seed=4)
    scope = {"allowed": [PUBLIC]}
    with RetrieverService.open(settings) as service:
        service.run_index(IndexRequest(paths=[str(public)], allowed=[PUBLIC]), progress=False)
        service.run_index(IndexRequest(paths=[str(private)], allowed=["C-secret"]), progress=False)
        client = TestClient(create_app(settings, service))

        def search(dialog, k=3):
            body = {"dialog": dialog, "k": k, "filter": scope}
            response = client.post("/v1/search", json=body)
            assert response.status_code == 200, response.text
            return response.json()["hits"]

        asked = {"caption": "a red bicycle leaning on a brick wall"}
        everything = search(asked, k=10)
        last = everything[-1]
        assert last["id"] not in [h["id"] for h in search(asked)]
        secret = service.index.iter_records()
        secret_ids = [r.id for r in secret if "C-secret" in (r.allowed or [])]
        assert len(secret_ids) == 3
        _caption(service, last["id"], "a red bicycle near a wall")
        _caption(service, everything[0]["id"], "a cat on a sofa")
        for image_id in secret_ids:
            _caption(service, image_id, "a red bicycle leaning on a brick wall")

        top = search(asked)
        assert last["id"] in [h["id"] for h in top]
        assert not {h["id"] for h in top} & set(secret_ids)
        found = next(h for h in top if h["id"] == last["id"])
        assert found["score"] == pytest.approx(last["score"], abs=1e-5)
        assert found["caption"] == "a red bicycle near a wall"
        # the caption-only hit gets its stored embedding too (looked up: the vector query did not bring it)
        packed = client.post(
            "/v1/search",
            json={
                "dialog": asked,
                "k": 3,
                "filter": scope,
                "with_vectors": True,
                "vector_encoding": "base64",
            },
        ).json()["hits"]
        assert [h["id"] for h in packed] == [h["id"] for h in top]
        stored = service.index.get_vectors([h["id"] for h in packed])
        np.testing.assert_array_equal([unpack(h["vector_base64"]) for h in packed], stored)

        denied = {
            "caption": "a picture",
            "rounds": [{"question": "is there a bicycle?", "answer": "no bicycle"}],
        }
        assert last["id"] not in [h["id"] for h in search(denied)]
        assert last["id"] in [
            h["id"]
            for h in search({**denied, "rounds": [{"question": "what is in it?", "answer": "a bicycle"}]})
        ]

        service.settings = settings.model_copy(update={"caption_search": False})
        assert last["id"] not in [h["id"] for h in search(asked)]


def test_caption_terms_rank_and_fusion():
    from chatir.dialog import Dialog
    from retriever_service.index.caption_search import dialog_terms, fuse, rank_by_terms

    dialog = Dialog(
        caption="A photo of the Golden Gate bridge",
        rounds=[
            {"question": "is it foggy?", "answer": "yes, thick fog"},
            {"question": "any boats?", "answer": "there isn't a boat"},
        ],
    )
    assert dialog_terms(dialog) == ["golden", "gate", "bridge", "thick", "fog"]
    captions = {"a": "a bridge in fog", "b": "a golden retriever", "c": "a bridge", "d": "a cat"}
    assert [i for i, _ in rank_by_terms(captions, ["bridge", "fog", "golden"])] == ["a", "b", "c"]
    assert fuse(["x", "a", "y"], ["a", "z"], 3) == ["a", "x", "z"]
