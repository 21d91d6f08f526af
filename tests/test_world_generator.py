"""World generation: determinism by seed, rendering, manifest, resume."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chatir.errors import ChatIRError
from world.generator import (
    WorldError,
    generate_world,
    image_relpath,
    is_complete_png,
    load_manifest,
    read_world_info,
)
from world.render import encode_png, render_scene
from world.scene import Scene, WorldObject, image_id, parse_image_id, sample_scene, scene_from_id
from world.vocab import BACKGROUNDS, COLOURS, PATTERNS, POSITIONS, SHAPES, SIZES


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scene_is_a_pure_function_of_seed_and_index() -> None:
    assert sample_scene(3, 17) == sample_scene(3, 17)
    assert sample_scene(3, 17) != sample_scene(4, 17)
    assert sample_scene(3, 17) != sample_scene(3, 18)
    assert scene_from_id(image_id(3, 17)) == sample_scene(3, 17)
    assert parse_image_id("w3-000017") == (3, 17)
    with pytest.raises(ValueError):
        parse_image_id("cat.png")


def test_scenes_cover_the_vocabulary_and_follow_the_rules() -> None:
    scenes = [sample_scene(0, i) for i in range(800)]
    objects = [o for s in scenes for o in s.objects]
    assert {o.shape for o in objects} == set(SHAPES)
    assert {o.colour for o in objects} == set(COLOURS)
    assert {o.size for o in objects} == set(SIZES)
    assert {o.pattern for o in objects} == set(PATTERNS)
    assert {o.position for o in objects} == set(POSITIONS)
    assert {s.background for s in scenes} == set(BACKGROUNDS)
    assert {len(s.objects) for s in scenes} == {1, 2, 3, 4}
    for scene in scenes:
        assert all(o.colour != scene.background for o in scene.objects)  # objects stand out
        assert len({o.position for o in scene.objects}) == len(scene.objects)


def test_scene_model_rejects_two_objects_in_one_cell() -> None:
    star = WorldObject(shape="star", colour="red", size="small", position="top")
    with pytest.raises(ValueError):
        Scene(objects=(star, star))


def test_render_is_deterministic_and_sized() -> None:
    scene = sample_scene(5, 2)
    a, b = render_scene(scene, 64), render_scene(scene, 64)
    assert a.size == (64, 64) and a.mode == "RGB"
    assert encode_png(a) == encode_png(b)
    assert render_scene(scene, 96).size == (96, 96)
    with pytest.raises(ValueError):
        render_scene(scene, 8)


def test_render_shows_the_scene() -> None:
    """Colours land where the scene says: a large red square in the top left on a white background."""
    obj = WorldObject(shape="square", colour="red", size="large", pattern="plain", position="top left")
    scene = Scene(objects=(obj,), background="white", backdrop="plain", lighting="bright")
    pixels = np.asarray(render_scene(scene, 64)).astype(int)
    top_left = pixels[8:16, 8:16].reshape(-1, 3).mean(axis=0)
    bottom_right = pixels[48:56, 48:56].reshape(-1, 3).mean(axis=0)
    assert top_left[0] > 180 and top_left[1] < 80  # red
    assert bottom_right.min() > 200  # white background
    dark = np.asarray(render_scene(scene.model_copy(update={"lighting": "dark"}), 64)).astype(int)
    assert dark[48:56, 48:56].mean() < 0.7 * bottom_right.mean()


def test_generate_world_writes_images_and_manifest(tmp_path: Path) -> None:
    info = generate_world(tmp_path / "w", 30, seed=9, size=32, workers=1, progress=False)
    assert info.complete and info.n == 30 and info.seed == 9
    entries = load_manifest(tmp_path / "w")
    assert [e.id for e in entries] == [image_id(9, i) for i in range(30)]
    for i, entry in enumerate(entries):
        path = tmp_path / "w" / entry.path
        assert entry.path == image_relpath(9, i)
        assert entry.scene == sample_scene(9, i)
        assert is_complete_png(path)
        with Image.open(path) as image:
            assert image.size == (32, 32)
    assert read_world_info(tmp_path / "w").size == 32


def test_same_seed_same_bytes_across_runs_and_worker_counts(tmp_path: Path) -> None:
    generate_world(tmp_path / "a", 12, seed=4, size=32, workers=1, progress=False)
    generate_world(tmp_path / "b", 12, seed=4, size=32, workers=2, progress=False)
    generate_world(tmp_path / "c", 12, seed=5, size=32, workers=1, progress=False)
    for i in range(12):
        rel = image_relpath(4, i)
        assert _digest(tmp_path / "a" / rel) == _digest(tmp_path / "b" / rel)
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (
        tmp_path / "b" / "manifest.jsonl"
    ).read_bytes()
    other = {_digest(tmp_path / "c" / image_relpath(5, i)) for i in range(12)}
    assert not other & {_digest(tmp_path / "a" / image_relpath(4, i)) for i in range(12)}


def test_resume_rewrites_only_missing_or_broken_files(tmp_path: Path) -> None:
    root = tmp_path / "w"
    generate_world(root, 10, seed=1, size=32, workers=1, progress=False)
    good = root / image_relpath(1, 3)
    broken = root / image_relpath(1, 4)
    missing = root / image_relpath(1, 5)
    reference = {p: p.read_bytes() for p in (broken, missing)}
    broken.write_bytes(reference[broken][:40])  # interrupted write
    missing.unlink()
    before = good.stat().st_mtime_ns
    assert not is_complete_png(broken)
    generate_world(root, 12, seed=1, size=32, workers=1, progress=False)  # resume and extend
    assert good.stat().st_mtime_ns == before  # untouched
    assert broken.read_bytes() == reference[broken] and missing.read_bytes() == reference[missing]
    assert len(load_manifest(root)) == 12 and is_complete_png(root / image_relpath(1, 11))


def test_world_folder_refuses_another_seed_or_size(tmp_path: Path) -> None:
    generate_world(tmp_path, 3, seed=1, size=32, workers=1, progress=False)
    with pytest.raises(WorldError, match="seed 1"):
        generate_world(tmp_path, 3, seed=2, size=32, workers=1, progress=False)
    with pytest.raises(ChatIRError):
        generate_world(tmp_path, 3, seed=1, size=48, workers=1, progress=False)
    with pytest.raises(WorldError):
        generate_world(tmp_path / "x", 0, seed=1)


def test_incomplete_or_damaged_world_is_reported(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="not a world folder"):
        load_manifest(tmp_path)
    generate_world(tmp_path, 3, seed=1, size=32, workers=1, progress=False)
    info = json.loads((tmp_path / "world.json").read_text())
    (tmp_path / "world.json").write_text(json.dumps({**info, "complete": False}))
    with pytest.raises(WorldError, match="incomplete"):
        load_manifest(tmp_path)
    (tmp_path / "world.json").write_text("{not json")
    with pytest.raises(WorldError, match="damaged"):
        read_world_info(tmp_path)
