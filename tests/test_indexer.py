"""``index_paths`` with a real (tiny, random-weight) CLIP model on a folder of real files: good images,
an exact duplicate, a corrupt JPEG and a text file; incremental re-runs, pruning and Ctrl-C recovery."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from chatir.schemas import SearchFilter
from chatir.settings import Settings
from retriever_service.index import ImageIndex, file_content_id, index_paths
from tests.counting_model import CountingModel

COLORS = {
    "red_car.png": (220, 30, 30),
    "green-field.jpg": (30, 200, 40),
    "blue sky.png": (30, 60, 230),
    "nested/yellow_duck.jpg": (240, 220, 20),
    "nested/deeper/purple.png": (150, 40, 160),
}


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    from retriever_service.models import load_model

    return load_model(str(tiny_clip_dir), device="cpu")


def _make_image(path, color, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    image.putpixel((1, 1), (0, 0, 0))
    image.save(path)


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for name, color in COLORS.items():
        _make_image(root / name, color)
    shutil.copyfile(root / "red_car.png", root / "nested" / "copy of red car.png")  # exact duplicate
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + os.urandom(64))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


@pytest.fixture
def open_index(tmp_path, model):
    settings = Settings(CHATIR_HOME=tmp_path / "home")
    opened = []

    def factory():
        index = ImageIndex(settings, model.model_id, model.dim, progress=False)
        opened.append(index)
        return index

    yield factory
    for index in opened:
        index.close()


def test_indexes_good_images_once_and_reports_bad_files(photos, model, open_index):
    index = open_index()
    counting = CountingModel(model)
    report = index_paths([photos], model=counting, index=index, progress=False, batch_size=2)

    assert report.added == 5 and report.duplicates == 1 and report.unchanged == 0
    assert counting.images == 5
    skipped = {os.path.basename(s.path): s.reason for s in report.skipped}
    assert set(skipped) == {"broken.jpg", "notes.txt"}
    assert "corrupt" in skipped["broken.jpg"] or "not an image" in skipped["broken.jpg"]
    assert "not an image" in skipped["notes.txt"]
    assert index.count() == 5

    red = index.get(file_content_id(photos / "red_car.png"))
    assert sorted(red.locations) == sorted(
        [str(photos / "red_car.png"), str(photos / "nested" / "copy of red car.png")]
    )
    assert red.text == "red car" and red.mime == "image/png" and (red.width, red.height) == (40, 30)
    assert red.source == str(photos) and red.allowed == ["public"]
    assert red.file_size == (photos / "red_car.png").stat().st_size
    assert index.get(file_content_id(photos / "blue sky.png")).text == "blue sky"

    # the stored vectors are the model's: an image finds itself first
    with Image.open(photos / "green-field.jpg") as image:
        vector = model.encode_images([image.convert("RGB")])[0]
    best, score = index.search(vector, k=1)[0]
    assert best.uri == str(photos / "green-field.jpg") and score > 0.99


def test_second_run_embeds_nothing(photos, model, open_index):
    index = open_index()
    index_paths([photos], model=model, index=index, progress=False)
    counting = CountingModel(model)
    report = index_paths([photos], model=counting, index=index, progress=False)
    assert counting.calls == 0
    assert report.added == 0 and report.unchanged == 6 and report.duplicates == 0
    assert len(report.skipped) == 2
    assert index.count() == 5


def test_scope_options_and_filters(photos, model, open_index):
    index = open_index()
    index_paths(
        [photos / "nested"],
        model=model,
        index=index,
        progress=False,
        source="team-share",
        allowed=["C42"],
        tags=["holiday"],
        owner="U1",
    )
    record = next(iter(index.iter_records()))
    assert (record.source, record.allowed, record.tags, record.owner) == (
        "team-share",
        ["C42"],
        ["holiday"],
        "U1",
    )
    vector = np.ones(model.dim, dtype=np.float32)
    assert index.search(vector, k=5, filter=SearchFilter(allowed=["public"])) == []
    assert len(index.search(vector, k=5, filter=SearchFilter(allowed=["C42"], tags=["holiday"]))) == 3


def test_prune_forgets_deleted_files_and_vanished_copies(photos, model, open_index):
    index = open_index()
    index_paths([photos], model=model, index=index, progress=False)
    red_id = file_content_id(photos / "red_car.png")
    (photos / "blue sky.png").unlink()
    (photos / "red_car.png").unlink()  # one of two copies

    report = index_paths([photos], model=model, index=index, progress=False)  # no --prune: nothing forgotten
    assert report.pruned == 0 and index.count() == 5

    report = index_paths([photos], model=model, index=index, progress=False, prune=True)
    assert report.pruned == 2 and report.added == 0
    assert index.count() == 4
    red = index.get(red_id)
    assert red.locations == [str(photos / "nested" / "copy of red car.png")] and red.uri == red.locations[0]
    assert str(photos / "red_car.png") not in index.file_index()

    # pruning one folder leaves the others alone, and a missing folder prunes nothing
    other = photos.parent / "other"
    _make_image(other / "orange.png", (250, 140, 0))
    index_paths([other], model=model, index=index, progress=False)
    report = index_paths(
        [photos / "nested", photos.parent / "gone"], model=model, index=index, progress=False, prune=True
    )
    assert report.pruned == 0 and index.count() == 5
    assert [s.reason for s in report.skipped] == ["not found"]


def test_changed_file_is_reindexed(photos, model, open_index):
    index = open_index()
    index_paths([photos], model=model, index=index, progress=False)
    old_id = file_content_id(photos / "green-field.jpg")
    _make_image(photos / "green-field.jpg", (10, 90, 10), size=(50, 20))
    os.utime(photos / "green-field.jpg", (1_000_000_000, 1_000_000_000))
    counting = CountingModel(model)
    report = index_paths([photos], model=counting, index=index, progress=False)
    assert report.added == 1 and counting.images == 1
    assert index.get(old_id) is None
    assert index.get(file_content_id(photos / "green-field.jpg")).width == 50
    assert index.count() == 5


def test_interrupted_run_keeps_finished_batches_and_resumes(photos, model, open_index):
    index = open_index()
    interrupted = CountingModel(model, interrupt_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        index_paths([photos], model=interrupted, index=index, progress=False, batch_size=2)
    assert index.count() == 2  # the first batch was stored

    index.close()  # a new process opens the store again
    index = open_index()
    assert index.count() == 2
    resumed = CountingModel(model)
    report = index_paths([photos], model=resumed, index=index, progress=False, batch_size=2)
    assert resumed.images == 3 and report.added == 3
    assert index.count() == 5
    assert len(index.get(file_content_id(photos / "red_car.png")).locations) == 2


def test_progress_callback_and_single_files(photos, model, open_index):
    index = open_index()
    seen = []
    report = index_paths(
        [photos / "red_car.png", photos / "notes.txt"],
        model=model,
        index=index,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert report.added == 1 and len(report.skipped) == 1
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    assert index.get(file_content_id(photos / "red_car.png")).source == str(photos)
