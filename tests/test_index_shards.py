"""Sharded indexing (``chatir index --shard I/N``, issue #17) on a tiny CLIP and real embedded stores: three shards
of one folder (duplicates placed in different shards) equal one unsharded run; a shard killed with SIGKILL resumes
without embedding again what it stored; another writer storing the same bytes meanwhile leaves one record with
every location; bad ``--shard`` values get a clear error on the command line and over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from chatir.settings import Settings, get_settings
from chatir.shard import InvalidShardError, Shard, shard_of
from retriever_service.index import ImageIndex, file_content_id, index_paths
from tests.conftest import REPO_ROOT
from tests.counting_model import CountingModel


def _image(path: Path, seed: int, size: int = 48) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _name_in_shard(shard: int, count: int, stem: str, folder: str = "") -> str:
    """A relative path ``folder/stem-K.png`` that hashes to ``shard``."""
    for k in range(1000):
        name = f"{folder}{stem}-{k}.png"
        if shard_of(name, count) == shard:
            return name
    raise AssertionError("no name found")


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    from retriever_service.models import load_model

    return load_model(str(tiny_clip_dir), device="cpu")


@pytest.fixture
def folder(tmp_path) -> Path:
    """18 distinct images in two levels, a corrupt file, and one image copied so its three copies fall into
    the three different shards of 3 (the bytes must still be stored once)."""
    root = tmp_path / "photos"
    for i in range(18):
        _image(root / ("deep/" if i % 3 == 0 else "") / f"img{i:02d}.png", seed=i)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    original = _image(root / "shared.png", seed=99)
    for shard in range(3):
        name = _name_in_shard(shard, 3, "copy of shared", folder="dups/")
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, root / name)
    return root


def _snapshot(index: ImageIndex) -> dict[str, tuple]:
    """id -> (vector, locations, per-location metadata, image fields): everything but times and the primary."""
    records = {r.id: r for r in index.iter_records()}
    vectors = index.get_vectors(sorted(records))
    return {
        image_id: (
            vector,
            sorted(record.locations),
            {loc: copy.model_dump() for loc, copy in sorted(record.copies.items())},
            (record.mime, record.width, record.height, record.file_size, sorted(record.allowed), record.tags),
        )
        for image_id, vector in zip(sorted(records), vectors, strict=True)
        for record in [records[image_id]]
    }


def test_shard_specs_parse_and_bad_ones_say_why():
    assert Shard.parse("1/3") == Shard(index=1, count=3) and str(Shard.parse(" 0 / 1 ")) == "0/1"
    assert Shard.model_validate("2/3") == Shard(index=2, count=3)
    for bad, words in {
        "3/3": "must be below N",
        "1/0": "at least 1",
        "x": "not of the form I/N",
        "-1/3": "below",
    }.items():
        with pytest.raises(InvalidShardError, match=words):
            Shard.parse(bad)
    # stable by construction: the first hash bytes of the relative path, not Python's salted hash()
    assert [shard_of(f"img{i}.png", 3) for i in range(6)] == [shard_of(f"img{i}.png", 3) for i in range(6)]
    assert shard_of("a/b.png", 1) == 0


def test_three_shards_equal_one_unsharded_run_and_store_duplicates_once(folder, model, tmp_path):
    whole = Settings(home=tmp_path / "whole")
    with ImageIndex(whole, model.model_id, model.dim, progress=False) as index:
        single = index_paths([folder], model=model, index=index, progress=False, batch_size=4)
        expected = _snapshot(index)
    assert single.added == 19 and single.duplicates == 3 and len(single.skipped) == 1

    sharded = Settings(home=tmp_path / "sharded")
    reports = []
    for i in range(3):  # three "processes": each opens the store, indexes its shard, closes it
        with ImageIndex(sharded, model.model_id, model.dim, progress=False) as index:
            reports.append(
                index_paths(
                    [folder],
                    model=model,
                    index=index,
                    progress=False,
                    batch_size=4,
                    shard=Shard(index=i, count=3),
                )
            )
    files = 18 + 1 + 4  # images, the corrupt file, the original and its three copies
    assert all(r.added > 0 for r in reports), [r.added for r in reports]
    assert [r.seen + r.other_shards for r in reports] == [files] * 3
    assert sum(r.seen for r in reports) == files  # every file in exactly one shard
    assert sum(r.added for r in reports) == single.added  # the shared bytes embedded by one shard only
    assert sum(r.duplicates for r in reports) == single.duplicates

    with ImageIndex(sharded, model.model_id, model.dim, progress=False) as index:
        got = _snapshot(index)
    assert sorted(got) == sorted(expected)  # the same ids
    shared = file_content_id(folder / "shared.png")
    shards_of_copies = {shard_of(Path(loc).relative_to(folder).as_posix(), 3) for loc in got[shared][1]}
    assert shards_of_copies == {0, 1, 2} and len(got[shared][1]) == 4  # one record, its copies from 3 shards
    for image_id, (vector, locations, copies, fields) in expected.items():
        assert np.allclose(got[image_id][0], vector, atol=1e-5), image_id
        assert got[image_id][1:] == (locations, copies, fields), image_id


def test_three_shards_writing_at_once_store_each_image_once_and_a_second_pass_restores_every_location(
    folder, model, tmp_path
):
    """Like three pods writing to one server: the shards' store calls interleave (one lock per call, as the
    service shares its index). Racing writers of the same bytes never make two records; a location lost to the
    check-then-write window comes back when the shards run again (which embeds nothing)."""
    from concurrent.futures import ThreadPoolExecutor

    from retriever_service.service import _Serialized

    with ImageIndex(Settings(home=tmp_path / "whole"), model.model_id, model.dim, progress=False) as index:
        index_paths([folder], model=model, index=index, progress=False, batch_size=2)
        expected = _snapshot(index)
    settings = Settings(home=tmp_path / "together")
    with ImageIndex(settings, model.model_id, model.dim, progress=False) as raw:
        shared = _Serialized(raw, threading.RLock())
        encoder = _Serialized(model, threading.RLock())

        def run(i: int, encoder=encoder):
            shard = Shard(index=i, count=3)
            return index_paths(
                [folder], model=encoder, index=shared, progress=False, batch_size=2, shard=shard
            )

        with ThreadPoolExecutor(3) as pool:
            first = list(pool.map(run, range(3)))
        assert raw.count() == len(expected) and sum(r.added for r in first) >= len(
            expected
        )  # (a race embeds twice)
        counting = CountingModel(model)
        again = [run(i, encoder=counting) for i in range(3)]
        assert counting.images == 0 and sum(r.added for r in again) == 0
        got = _snapshot(raw)
    assert sorted(got) == sorted(expected)
    for image_id, (vector, locations, copies, fields) in expected.items():
        assert np.allclose(got[image_id][0], vector, atol=1e-5), image_id
        assert got[image_id][1:] == (locations, copies, fields), image_id


def test_prune_with_a_shard_forgets_only_that_shards_vanished_files(folder, model, tmp_path):
    settings = Settings(home=tmp_path / "home")
    with ImageIndex(settings, model.model_id, model.dim, progress=False) as index:
        index_paths([folder], model=model, index=index, progress=False)
        gone = sorted(folder.glob("img*.png"))[:6]
        for path in gone:
            path.unlink()
        owned = [p for p in gone if shard_of(p.relative_to(folder).as_posix(), 3) == 0]
        assert 0 < len(owned) < len(gone)
        report = index_paths(
            [folder], model=model, index=index, progress=False, prune=True, shard=Shard(index=0, count=3)
        )
        assert report.pruned == len(owned)
        remaining = set(index.file_index())
        assert not any(str(p) in remaining for p in owned)
        assert all(str(p) in remaining for p in gone if p not in owned)  # other shards prune their own


def test_an_image_another_writer_stored_meanwhile_becomes_a_copy_not_a_second_record(tmp_path, model):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    original = _image(ours / "cat.png", seed=7)
    _image(ours / "dog.png", seed=8)
    theirs.mkdir()
    shutil.copyfile(original, theirs / "same cat.png")
    settings = Settings(home=tmp_path / "home")
    with ImageIndex(settings, model.model_id, model.dim, progress=False) as index:
        # the other shard stores the same bytes after this run read the index and before it writes its batch
        def other_writer() -> None:
            index_paths([theirs], model=model, index=index, progress=False, allowed=["C-other"])

        report = index_paths(
            [ours], model=CountingModel(model, before_first_call=other_writer), index=index, progress=False
        )
        cat = index.get(file_content_id(original))
        assert index.count() == 2 and report.added == 1 and report.duplicates == 1
        assert sorted(cat.locations) == sorted([str(theirs / "same cat.png"), str(original)])
        assert cat.copies[str(theirs / "same cat.png")].allowed == ["C-other"]  # the other writer's copy kept
        assert sorted(cat.allowed) == ["C-other", "public"]


def test_a_shard_killed_mid_run_resumes_without_embedding_again(tmp_path, model, tiny_clip_dir):
    folder = tmp_path / "many"
    for i in range(150):
        _image(folder / f"p{i:03d}.png", seed=1000 + i, size=96)
    shard = Shard(index=1, count=3)
    mine = [p for p in sorted(folder.iterdir()) if shard.owns(p.name)]
    env = {
        **os.environ,
        "CHATIR_HOME": str(tmp_path / "home"),
        "CHATIR_MODEL": str(tiny_clip_dir),
        "CHATIR_DEVICE": "cpu",
        "CHATIR_BATCH_SIZE": "2",
        "CHATIR_SERVICE_URL": "http://127.0.0.1:9",  # no service: the CLI opens the store itself
        "PYTHONPATH": str(REPO_ROOT),
        # every stored batch on the bar at once (tqdm's defaults redraw at most every 0.1 s: on a quiet machine
        # the shard finished before a throttled bar showed 10 done, and the kill came too late)
        "TQDM_MININTERVAL": "0",
        "TQDM_MINITERS": "1",
    }
    for name in ("QDRANT_URL", "CHATIR_QDRANT_URL", "CHATIR_COLLECTION", "CHATIR_API_KEY"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-c", "from frontends.main import main; main()", "index", str(folder), "--shard", str(shard)],
        env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    progress = _watch_progress(process)
    try:
        deadline = time.monotonic() + 240
        while progress["done"] < 10:
            assert process.poll() is None, f"the shard exited early: {progress['text'][-2000:]}"
            assert time.monotonic() < deadline, "the shard made no progress"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)  # no clean shutdown
    finally:
        process.kill()
        process.wait(timeout=30)
    assert progress["total"] == len(mine)

    settings = Settings(home=tmp_path / "home")
    with ImageIndex(settings, model.model_id, model.dim, progress=False) as index:
        stored = index.count()
        assert 0 < stored < len(mine), f"the kill came after the shard had finished ({stored} of {len(mine)})"
        counting = CountingModel(model)
        report = index_paths([folder], model=counting, index=index, progress=False, shard=shard)
        assert counting.images == len(mine) - stored == report.added  # finished images are not redone
        assert report.unchanged == stored and report.other_shards == 150 - len(mine)
        assert sorted(r.uri for r in index.iter_records()) == sorted(map(str, mine))


def _watch_progress(process: subprocess.Popen) -> dict:
    """Follows the tqdm bar a child writes to stderr (``n/total``) in a thread."""
    state = {"done": 0, "total": None, "text": ""}

    def read() -> None:
        buffer = b""
        while chunk := process.stderr.read1(4096):
            buffer += chunk
            state["text"] = buffer.decode(errors="replace")
            found = re.findall(r"indexing:[^\r\n]*?\b(\d+)/(\d+) \[", state["text"])
            if found:
                state["done"], state["total"] = int(found[-1][0]), int(found[-1][1])

    threading.Thread(target=read, daemon=True).start()
    return state


# --- the command line and the HTTP API -------------------------------------------------------------
@pytest.fixture
def cli(tmp_path, tiny_clip_dir, monkeypatch):
    from retriever_service.cli import register

    monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHATIR_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("CHATIR_DEVICE", "cpu")
    monkeypatch.setenv("CHATIR_SERVICE_URL", "http://127.0.0.1:9")
    for name in ("CHATIR_API_KEY", "QDRANT_URL", "CHATIR_QDRANT_URL", "CHATIR_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    app = typer.Typer()
    register(app)

    def run(*args: str):
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    yield run
    get_settings.cache_clear()


def test_cli_shard_runs_and_bad_shards_are_clear_errors(cli, folder):
    for bad, words in {"3/3": "must be below N", "1/0": "at least 1", "x": "not of the form I/N"}.items():
        result = cli("index", str(folder), "--shard", bad)
        said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # typer may draw a box around it
        assert result.exit_code == 2 and "--shard" in said and words in said, result.output
    assert not (Path(os.environ["CHATIR_HOME"]) / "qdrant").exists()  # nothing opened, nothing written

    result = cli("index", str(folder), "--shard", "2/3")
    assert result.exit_code == 0, result.output
    mine = sum(
        1
        for p in folder.rglob("*")
        if p.is_file() and Shard(index=2, count=3).owns(p.relative_to(folder).as_posix())
    )
    added, unchanged, duplicates = (
        int(n) for n in re.search(r"(\d+) added, (\d+) unchanged, (\d+) duplicates", result.stdout).groups()
    )
    skipped = 1 if Shard(index=2, count=3).owns("broken.jpg") else 0
    assert added + unchanged + duplicates + skipped == mine
    assert f"{23 - mine} file(s) left to the other shards" in result.stdout
    assert "shard 2/3 of the files under" in result.stdout


def test_http_index_jobs_take_a_shard_and_refuse_bad_ones(folder, tiny_clip_dir, tmp_path):
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    settings = Settings(
        home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu", index_roots=[tmp_path]
    )
    with RetrieverService.open(settings) as service:
        client = TestClient(create_app(settings, service))
        for bad in ("3/3", "1/0", "x", {"index": 5, "count": 2}):
            response = client.post("/v1/index", json={"paths": [str(folder)], "shard": bad})
            assert response.status_code == 422, response.text
            assert "shard" in response.text and "Internal" not in response.text
        jobs = []
        for spec in ("0/3", {"index": 1, "count": 3}, "2/3"):
            job = client.post("/v1/index", json={"paths": [str(folder)], "shard": spec}).json()
            jobs.append(service.wait_for_job(job["id"], timeout_s=120))
        assert [j.state for j in jobs] == ["done"] * 3
        assert sum(j.added for j in jobs) == 19 and sum(j.duplicates for j in jobs) == 3
        assert all(j.other_shards > 0 for j in jobs) and service.count() == 19
