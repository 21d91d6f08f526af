"""retriever_service.models.images: safe decoding of image files in a background thread pool."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from retriever_service.models import DecodedImage, ImageFailure, iter_image_batches, load_image


def write_image(path, size=(40, 30), mode="RGB", fmt=None, **save_kwargs):
    rng = np.random.RandomState(len(str(path)))
    channels = {"RGB": 3, "RGBA": 4}[mode]
    Image.fromarray(rng.randint(0, 255, (size[1], size[0], channels), dtype=np.uint8), mode).save(
        path, fmt, **save_kwargs
    )
    return path


@pytest.fixture
def folder(tmp_path):
    write_image(tmp_path / "good.jpg")
    write_image(tmp_path / "good.png", size=(20, 50))
    write_image(tmp_path / "alpha.png", mode="RGBA")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "subdir").mkdir()
    return tmp_path


def test_good_files_decode_to_rgb_with_their_metadata(folder):
    jpeg = load_image(folder / "good.jpg")
    assert isinstance(jpeg, DecodedImage)
    assert jpeg.image.mode == "RGB" and (jpeg.width, jpeg.height) == (40, 30)
    assert jpeg.format == "JPEG" and jpeg.mime == "image/jpeg"
    alpha = load_image(folder / "alpha.png")
    assert alpha.image.mode == "RGB" and alpha.mime == "image/png"


def test_transparent_areas_become_white_not_black(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    decoded = load_image(tmp_path / "clear.png")
    assert decoded.image.getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.jpg", "truncated"),
        ("notes.txt", "not an image"),
        ("empty.png", "not an image"),
        ("missing.jpg", "not found"),
        ("subdir", "directory"),
    ],
)
def test_bad_files_give_a_failure_with_a_reason_and_never_raise(folder, name, reason):
    result = load_image(folder / name)
    assert isinstance(result, ImageFailure)
    assert reason in result.reason and result.path == folder / name


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused(folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x30 = 1200 pixels: above the limit
    result = load_image(folder / "good.jpg")
    assert isinstance(result, ImageFailure) and "decompression-bomb" in result.reason


def test_unreadable_file(folder, monkeypatch):
    def refuse(*args, **kwargs):  # root reads any file, so play the OS refusing
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", refuse)
    assert "permission denied" in load_image(folder / "good.jpg").reason


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    decoded = load_image(tmp_path / "rotated.jpg")
    assert (decoded.width, decoded.height) == (20, 40) == decoded.image.size


def test_max_side_shrinks_while_keeping_the_original_size(tmp_path):
    write_image(tmp_path / "big.jpg", size=(800, 400))
    decoded = load_image(tmp_path / "big.jpg", max_side=100)
    assert (decoded.width, decoded.height) == (800, 400)
    assert max(decoded.image.size) == 100


def test_batches_keep_input_order_and_split_good_from_bad(folder):
    names = ["good.jpg", "notes.txt", "good.png", "truncated.jpg", "alpha.png", "missing.jpg", "empty.png"]
    batches = list(iter_image_batches((folder / n for n in names), batch_size=3, workers=2))
    assert [len(b.images) + len(b.failures) for b in batches] == [3, 3, 1]
    assert [d.path.name for b in batches for d in b.images] == ["good.jpg", "good.png", "alpha.png"]
    assert [f.path.name for b in batches for f in b.failures] == [
        "notes.txt",
        "truncated.jpg",
        "missing.jpg",
        "empty.png",
    ]
    assert list(iter_image_batches([], batch_size=3)) == []
    with pytest.raises(ValueError):
        next(iter_image_batches([folder / "good.jpg"], batch_size=0))


def test_paths_are_consumed_lazily_and_closing_early_stops(folder):
    consumed = []

    def endless():
        while True:
            consumed.append(1)
            yield folder / "good.png"

    batches = iter_image_batches(endless(), batch_size=4, workers=2, prefetch_batches=2)
    first = next(batches)
    assert len(first.images) == 4
    assert len(consumed) <= 4 * 2 + 4  # a bounded window, not the whole (endless) input
    started = time.monotonic()
    batches.close()
    assert time.monotonic() - started < 5


def test_next_batch_decodes_while_the_consumer_works(folder, monkeypatch):
    """While the caller runs the model on batch k, batch k+1 is already decoding in the pool."""
    import threading

    from retriever_service.models import images as images_module

    real_load = images_module.load_image
    started: list[int] = []
    second_batch_started = threading.Event()

    def recording_load(path, **kwargs):
        started.append(int(path.stem))
        if int(path.stem) >= 4:
            second_batch_started.set()
        return real_load(folder / "good.png", **kwargs)

    monkeypatch.setattr(images_module, "load_image", recording_load)
    paths = [folder / f"{i}.png" for i in range(8)]
    batches = iter_image_batches(paths, batch_size=4, workers=2)
    first = next(batches)
    assert len(first.images) == 4
    # the consumer has not asked for batch 2 yet, but its files are being decoded
    assert second_batch_started.wait(timeout=5)
    second = next(batches)
    assert len(second.images) == 4 and sorted(started) == list(range(8))
