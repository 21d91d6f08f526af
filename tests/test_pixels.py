"""FastPixels gives the pixel_values of transformers' PIL-backend processors, and the models use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BlipImageProcessorPil, CLIPImageProcessorPil, SiglipImageProcessorPil

from retriever_service.models import load_model
from retriever_service.models.pixels import FastPixels


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)

    def noise(height: int, width: int, channels: int = 3) -> np.ndarray:
        shape = (height, width, channels) if channels > 1 else (height, width)
        return rng.integers(0, 256, shape, dtype=np.uint8)

    return [
        Image.fromarray(noise(480, 640)),  # a photo's shape
        Image.fromarray(noise(131, 97)),  # odd sides, portrait
        Image.fromarray(noise(96, 96)),  # already the starter's size
        Image.fromarray(noise(300, 200, 1), mode="L"),  # greyscale
        Image.fromarray(noise(64, 256, 4), mode="RGBA"),  # alpha, wide
    ]


PROCESSORS = {
    "clip": CLIPImageProcessorPil(),  # shortest edge 224, centre crop, bicubic
    "starter": CLIPImageProcessorPil(size={"shortest_edge": 96}, crop_size={"height": 96, "width": 96}),
    "blip": BlipImageProcessorPil(),  # fixed 384 x 384, no crop
    "siglip": SiglipImageProcessorPil(resample=Image.Resampling.BILINEAR),  # fixed 224, mean/std 0.5
}


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_fast_pixels_equal_the_processors_own(name):
    processor = PROCESSORS[name]
    fast = FastPixels.for_processor(processor)
    assert fast is not None
    for image in _images():
        expected = processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        got = fast([image])
        assert got is not None and got.dtype == torch.float32 and got.shape == expected.shape
        assert torch.max(torch.abs(got - expected)).item() < 1e-5, (name, image.size, image.mode)


def test_what_fast_pixels_does_not_reproduce_stays_with_the_processor(tiny_clip_dir):
    class OwnSteps(CLIPImageProcessorPil):
        def _preprocess(self, images, **kwargs):  # a processor with a step of its own
            return super()._preprocess(images, **kwargs)

    assert FastPixels.for_processor(OwnSteps()) is None
    assert FastPixels.for_processor(CLIPImageProcessorPil(do_pad=True)) is None
    assert FastPixels.for_processor(object()) is None

    # a crop larger than the resized image would need padding: that batch goes to the processor
    padding = CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 80, "width": 80})
    fast = FastPixels.for_processor(padding)
    assert fast is not None and fast([Image.new("RGB", (100, 70))]) is None

    model = load_model(str(tiny_clip_dir), device="cpu")
    model.image_processor, model.fast_pixels = padding, fast
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8))
    expected = padding(images=[image], return_tensors="pt")["pixel_values"]
    assert torch.equal(model.preprocess_images([image]), expected)


def test_models_embed_the_same_with_and_without_the_fast_path(tiny_clip_dir):
    model = load_model(str(tiny_clip_dir), device="cpu")
    assert model.fast_pixels is not None  # the tiny CLIP's processor is the plain PIL backend
    images = _images()
    fast = model.encode_images(images)
    model.fast_pixels = None
    slow = model.encode_images(images)
    assert fast.shape == (len(images), model.dim)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    one_by_one = np.concatenate([model.encode_pixels(model.preprocess_images([image])) for image in images])
    np.testing.assert_allclose(one_by_one, slow, atol=1e-5)
