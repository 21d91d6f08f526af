"""``chatir reindex``: another model without downtime, on the embedded store, with two tiny models (conftest)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from chatir.dialog import Dialog
from chatir.errors import ChatIRError, IndexMismatchError
from chatir.schemas import IndexRequest, PoolRequest, SearchRequest
from chatir.settings import Settings
from tests.fakes.slack_api import BOT_TOKEN, SlackAPIServer


def _png(seed: int, size: int = 96) -> bytes:
    image = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    draw = ImageDraw.Draw(image)
    draw.rectangle((seed % 40, seed % 30, 50 + seed % 40, 60), fill=((seed * 13) % 256, 255 - seed % 256, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _gallery(folder, n: int):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"image_{i:03d}.png").write_bytes(_png(i))
    return folder


def _pool_space(service):
    """The embedding space a re-ranker's pool names (``PoolResponse.space``)."""
    return service.search_pool(PoolRequest(dialog=Dialog(caption="a picture"), k=3, with_vectors=False)).space


def _search(service, text: str = "a red square", k: int = 50):
    return service.search(SearchRequest(dialog=Dialog(caption=text), k=k))


def test_reindex_in_the_service_serves_during_and_switches(tmp_path, tiny_clip_dir, tiny_blip_dir):
    from retriever_service.api import create_app
    from retriever_service.index import collections
    from retriever_service.service import RetrieverService

    with SlackAPIServer() as slack:
        settings = Settings(
            home=tmp_path / "home",
            model=str(tiny_clip_dir),
            device="cpu",
            batch_size=2,
            slack_bot_token=BOT_TOKEN,
            slack_api_url=slack.base_url + "/api/",
        )
        gallery = _gallery(tmp_path / "gallery", 10)
        service = RetrieverService.open(settings)
        try:
            service.run_index(IndexRequest(paths=[str(gallery)]), progress=False)
            # a Slack image whose upload was lost since, and an image whose only file was deleted
            slack_bytes = _png(100)
            fake = slack.add_file("shared.png", slack_bytes, channel="C1")
            upload, _ = service.save_upload("shared.png", io.BytesIO(slack_bytes))
            service.run_index(
                IndexRequest(paths=[str(upload)], source=f"slack:C1/{fake.id}", allowed=["C1"]),
                progress=False,
            )
            upload.unlink()
            # another whose upload had another name than Slack gives it now: it comes back at a new path
            renamed_bytes = _png(101)
            renamed = slack.add_file("renamed.png", renamed_bytes, channel="C1")
            old_upload, _ = service.save_upload("original.png", io.BytesIO(renamed_bytes))
            service.run_index(
                IndexRequest(paths=[str(old_upload)], source=f"slack:C1/{renamed.id}", allowed=["C1"]),
                progress=False,
            )
            old_upload.unlink()
            (gallery / "image_009.png").unlink()
            before = _search(service)
            assert before.model == str(tiny_clip_dir) and len(before.hits) == 12
            space_before = _pool_space(service)
            assert space_before == _pool_space(service)  # one space while the collection serves

            started, go = threading.Event(), threading.Event()
            during: list = []

            def progress(done: int, total: int) -> None:
                if not started.is_set():
                    started.set()
                    assert go.wait(60)

            result: dict = {}
            worker = threading.Thread(
                target=lambda: result.setdefault("report", service.reindex(str(tiny_blip_dir), progress))
            )
            worker.start()
            assert started.wait(120), "the reindex never reported progress"
            during.append(_search(service))  # the reindex is paused half-way: the old index answers
            go.set()
            worker.join(120)
            report = result["report"]

            assert during[0].model == str(tiny_clip_dir)
            assert [h.id for h in during[0].hits] == [h.id for h in before.hits]
            assert report.switched and report.refetched == 2 and report.total == 12
            assert [m.path for m in report.missing] == [str((gallery / "image_009.png").resolve())]
            after = _search(service)
            assert after.model == str(tiny_blip_dir) == service.model_id
            assert _pool_space(service) != space_before  # an agent's kept embeddings no longer apply
            assert len(after.hits) == 11 and service.count() == 11
            assert upload.read_bytes() == slack_bytes  # fetched again into its place
            moved = service.record(report.relocated[0])
            assert [Path(p).name for p in moved.locations] == ["renamed.png"]
            assert Path(moved.uri).read_bytes() == renamed_bytes and moved.copies[moved.uri].allowed == ["C1"]
            shared = next(
                h for h in _search(service, k=50).hits if h.source and h.source.startswith("slack:")
            )
            assert service.record(shared.id).allowed == ["C1"]  # the record came over unchanged
            assert slack.calls_to("files.info")

            listed = {c.name: c for c in collections.family(service._raw_index.client, settings.collection)}
            assert listed[report.source].images == 12 and not listed[report.source].active
            assert listed[report.target].active and listed[report.target].model == str(tiny_blip_dir)

            # the HTTP route: a second reindex back to the first model, dropping the old collection
            from fastapi.testclient import TestClient

            with TestClient(create_app(settings, service=service)) as client:
                job = client.post("/v1/reindex", json={"model": str(tiny_clip_dir), "drop_old": True})
                assert job.status_code == 202, job.text
                done = service.wait_for_job(job.json()["id"], 120)
                assert done.state == "done", done.error
                assert client.get("/readyz").json()["model"] == str(tiny_clip_dir)
                assert done.added == 11 and done.total == 11  # a collection of its own for the first model
            names = {c.name for c in collections.family(service._raw_index.client, settings.collection)}
            assert report.target not in names and report.source in names
        finally:
            service.close()

    # restarted: the switch is durable; the old model is refused with the way forward
    with RetrieverService.open(settings) as reopened:
        assert reopened.count() == 11
    with pytest.raises(IndexMismatchError, match=re.escape(f"`chatir reindex --model {tiny_blip_dir}`")):
        RetrieverService.open(settings.model_copy(update={"model": str(tiny_blip_dir)}))


def test_a_service_follows_a_switch_made_elsewhere(tmp_path, tiny_clip_dir, tiny_blip_dir):
    from retriever_service.index.reindex import reindex
    from retriever_service.model_switch import follow_active
    from retriever_service.models import load_model
    from retriever_service.service import RetrieverService

    settings = Settings(home=tmp_path / "home", model=str(tiny_clip_dir), device="cpu")
    with RetrieverService.open(settings) as service:
        service.run_index(IndexRequest(paths=[str(_gallery(tmp_path / "g", 4))]), progress=False)
        assert not follow_active(service)
        new_model = load_model(str(tiny_blip_dir), device="cpu", settings=settings)
        # another process's reindex: it switches the alias; this service has not adopted anything yet
        _, built = reindex(
            settings=settings, source=service._raw_index, model=new_model, lock=service._index_lock
        )
        built.close()
        assert _search(service).model == str(tiny_clip_dir)  # still its own collection
        assert follow_active(service)
        assert _search(service).model == str(tiny_blip_dir) and service.count() == 4
        with pytest.raises(ChatIRError, match="already serves"):
            service.reindex(str(tiny_blip_dir))


def _chatir(env):
    return [sys.executable, "-m", "frontends.main"]


def test_a_killed_reindex_resumes(tmp_path, tiny_clip_dir, tiny_blip_dir):
    from retriever_service.service import RetrieverService

    home = tmp_path / "home"
    settings = Settings(home=home, model=str(tiny_clip_dir), device="cpu")
    with RetrieverService.open(settings) as service:
        service.run_index(IndexRequest(paths=[str(_gallery(tmp_path / "g", 80))]), progress=False)
    env = {
        **os.environ,
        "CHATIR_HOME": str(home),
        "CHATIR_MODEL": str(tiny_clip_dir),
        "CHATIR_DEVICE": "cpu",
        "CHATIR_BATCH_SIZE": "1",
        "CHATIR_SERVICE_URL": "http://127.0.0.1:9",
        "TQDM_MININTERVAL": "0",  # every step on the bar at once, so the kill lands mid-run on a fast machine
        "TQDM_MINITERS": "1",
    }
    command = [*_chatir(env), "reindex", "--model", str(tiny_blip_dir)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    deadline = time.monotonic() + 240
    assert process.stderr is not None
    while time.monotonic() < deadline:
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        counts = [int(n) for n in re.findall(rb"reindex:\s+\d+%\|[^|]*\|\s*(\d+)/", seen)]
        if counts and max(counts) >= 5:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, seen.decode(errors="replace")[-2000:]

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    carried = int(re.search(r"(\d+) carried over from a stopped run", finished.stdout).group(1))
    embedded = int(re.search(r"(\d+) embedded", finished.stdout).group(1))
    assert carried >= 5 and embedded >= 1 and carried + embedded == 80, finished.stdout
    assert "is kept: `chatir collections drop" in finished.stdout

    with RetrieverService.open(settings.model_copy(update={"model": str(tiny_blip_dir)})) as service:
        assert service.count() == 80
        assert len(_search(service, k=80).hits) == 80

    listed = subprocess.run([*_chatir(env), "collections", "list"], env=env, capture_output=True, text=True)
    rows = [line for line in listed.stdout.splitlines() if "images" in line]
    assert (
        len(rows) == 2 and rows[0].startswith("  chatir_images ") and rows[1].startswith("* chatir_images__")
    )
    active = rows[1].split()[1]
    refused = subprocess.run(
        [*_chatir(env), "collections", "drop", active], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "cannot be dropped" in refused.stderr
    dropped = subprocess.run(
        [*_chatir(env), "collections", "drop", "chatir_images"], env=env, capture_output=True, text=True
    )
    assert dropped.returncode == 0, dropped.stderr
    with RetrieverService.open(settings.model_copy(update={"model": str(tiny_blip_dir)})) as service:
        assert service.count() == 80  # the serving collection is untouched


def test_chatir_reindex_against_a_running_service_never_interrupts_search(
    tmp_path, tiny_clip_dir, tiny_blip_dir, monkeypatch
):
    """The service holds the embedded store: the CLI has it reindex in place, over HTTP, while searches go on."""
    import httpx
    import typer
    from typer.testing import CliRunner

    from chatir.settings import get_settings
    from retriever_service.api import create_app
    from retriever_service.cli import register
    from tests.test_tools_support import live_server

    gallery = _gallery(tmp_path / "gallery", 24)
    env = {
        "CHATIR_HOME": str(tmp_path / "home"),
        "CHATIR_MODEL": str(tiny_clip_dir),
        "CHATIR_DEVICE": "cpu",
        "CHATIR_INDEX_ROOTS": str(gallery),
        "CHATIR_BATCH_SIZE": "2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("CHATIR_API_KEY", "QDRANT_URL", "CHATIR_QDRANT_URL", "CHATIR_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    app = typer.Typer()
    register(app)
    with live_server(create_app(get_settings())) as url:
        monkeypatch.setenv("CHATIR_SERVICE_URL", url)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        get_settings.cache_clear()
        indexed = CliRunner().invoke(app, ["index", str(gallery)])
        assert indexed.exit_code == 0 and "24 added" in indexed.output, indexed.output

        answers: list[tuple[int, str]] = []
        stop = threading.Event()

        def keep_searching() -> None:
            body = {"dialog": {"caption": "a green square"}, "k": 5}
            while not stop.is_set():
                response = httpx.post(f"{url}/v1/search", json=body, timeout=30)
                answers.append((response.status_code, response.json().get("model", response.text)))

        searcher = threading.Thread(target=keep_searching)
        searcher.start()
        try:
            get_settings.cache_clear()
            result = CliRunner().invoke(app, ["reindex", "--model", str(tiny_blip_dir)])
            time.sleep(0.3)
        finally:
            stop.set()
            searcher.join(60)
        assert result.exit_code == 0, result.output
        assert "reindexing inside it" in result.output and "24 embedded" in result.output
        assert httpx.get(f"{url}/readyz").json()["model"] == str(tiny_blip_dir)
        assert answers and all(status == 200 for status, _ in answers), answers[:5]
        models = [model for _, model in answers]
        assert models[0] == str(tiny_clip_dir) and models[-1] == str(tiny_blip_dir)
        assert models == sorted(models, key=lambda m: m == str(tiny_blip_dir))  # one switch, never back
    get_settings.cache_clear()
