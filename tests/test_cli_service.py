"""``chatir index`` / ``chatir search`` (local store and through a running service) and one real HTTP
round trip against uvicorn, on a tiny CLIP with CHATIR_HOME in a temp folder."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from chatir.dialog import Dialog
from chatir.settings import get_settings

QUERY = "a red square on a white wall"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _image(path: Path, seed: int, fmt: str | None = None) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


@pytest.fixture
def cli(tmp_path, tiny_clip_dir, monkeypatch):
    """A ``chatir``-like app with this area's commands, env pointing at a temp home and a closed port."""
    from retriever_service.cli import register

    monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHATIR_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("CHATIR_DEVICE", "cpu")
    monkeypatch.setenv("CHATIR_SERVICE_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens
    for name in ("CHATIR_API_KEY", "QDRANT_URL", "CHATIR_QDRANT_URL", "CHATIR_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def run(*args: str):
        get_settings.cache_clear()  # tests change the environment between commands
        return runner.invoke(app, list(args))

    yield run
    get_settings.cache_clear()


@pytest.fixture
def photos(tmp_path) -> dict[str, Path]:
    """Three good images, an exact duplicate, a corrupt image and a text file."""
    folder = tmp_path / "photos"
    files = {
        "a": _image(folder / "a.png", 1),
        "b": _image(folder / "b.jpg", 2),
        "c": _image(folder / "nested" / "c.png", 3),
    }
    files["dup"] = folder / "nested" / "copy of a.png"
    shutil.copyfile(files["a"], files["dup"])
    files["corrupt"] = folder / "broken.jpg"
    files["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    files["text"] = folder / "notes.txt"
    files["text"].write_text("shopping list: milk, eggs\n")
    files["folder"] = folder
    return files


@pytest.fixture
def count_image_encodes(monkeypatch) -> list[int]:
    from retriever_service.models import RetrievalModel

    calls = [0]
    original = RetrievalModel.encode_images

    def counting(self, images):
        calls[0] += len(images)
        return original(self, images)

    monkeypatch.setattr(RetrievalModel, "encode_images", counting)
    return calls


def _exact_ranking(model_dir: Path, files: list[Path], caption: str) -> list[str]:
    """uris ranked by exact cosine of the caption with each image, with the model loaded directly."""
    from retriever_service.models import load_image, load_model

    model = load_model(str(model_dir), device="cpu")
    vectors = model.encode_images([load_image(p).image for p in files])
    query = model.encode_dialogs([Dialog(caption=caption)])[0]
    return [str(files[i]) for i in np.argsort(-(vectors @ query))]


def test_index_reports_bad_files_dedupes_and_second_run_embeds_nothing(cli, photos, count_image_encodes):
    first = cli("index", str(photos["folder"]), "--tag", "demo")
    assert first.exit_code == 0, first.output
    assert "3 added, 0 unchanged, 1 duplicates, 0 pruned" in first.stdout
    assert "skipped 2 file(s):" in first.stdout
    skipped = first.stdout.split("skipped 2 file(s):")[1].strip().splitlines()
    assert sorted(Path(line.split(":")[0].strip()).name for line in skipped) == ["broken.jpg", "notes.txt"]
    assert all(line.split(":", 1)[1].strip() for line in skipped)  # each with its reason
    assert count_image_encodes[0] == 3

    second = cli("index", str(photos["folder"]))
    assert second.exit_code == 0, second.output
    assert "0 added, 4 unchanged, 0 duplicates, 0 pruned" in second.stdout
    assert count_image_encodes[0] == 3  # nothing embedded again

    photos["c"].unlink()
    pruned = cli("index", str(photos["folder"]), "--prune")
    assert pruned.exit_code == 0 and "1 pruned" in pruned.stdout


def test_search_falls_back_to_the_local_store_and_ranks_exactly(cli, photos, tiny_clip_dir):
    assert cli("index", str(photos["folder"])).exit_code == 0

    result = cli("search", QUERY, "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    assert "via local embedded store" in result.stderr and "no service answered" in result.stderr
    hits = json.loads(result.stdout)["hits"]
    expected = _exact_ranking(tiny_clip_dir, [photos["a"], photos["b"], photos["c"]], QUERY)
    assert [h["uri"] for h in hits] == expected
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    table = cli("search", QUERY, "-k", "2", "--exclude", hits[0]["id"])
    assert table.exit_code == 0, table.output
    lines = table.stdout.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "id", "uri"] and len(lines) == 3
    assert hits[0]["id"] not in table.stdout and lines[1].split()[2] == hits[1]["id"]

    none = cli("search", QUERY, "--allow", "C-nobody")
    assert none.exit_code == 0 and "no matching images" in none.stdout


def test_index_of_a_missing_path_is_a_clear_error(cli, tmp_path):
    from chatir.errors import ChatIRError

    result = cli("index", str(tmp_path / "nowhere"))
    assert isinstance(result.exception, ChatIRError) and "No such file or folder" in str(result.exception)


@contextmanager
def _serve(settings) -> Iterator[tuple[str, threading.Thread]]:
    import uvicorn

    from retriever_service.api import create_app

    host, port = "127.0.0.1", int(settings.service_url.rsplit(":", 1)[1])
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        server.should_exit = True
        raise AssertionError("the service did not become ready")
    try:
        yield url, thread
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_http_round_trip_with_a_running_service(cli, photos, monkeypatch, tmp_path):
    from chatir.errors import ServiceUnavailableError

    port = _free_port()
    monkeypatch.setenv("CHATIR_SERVICE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CHATIR_API_KEY", "round-trip-key")
    monkeypatch.setenv("CHATIR_INDEX_ROOTS", str(photos["folder"]))
    get_settings.cache_clear()
    auth = {"Authorization": "Bearer round-trip-key"}

    with _serve(get_settings()) as (url, thread):
        # the service holds the embedded store: `chatir index` goes through its API
        indexed = cli("index", str(photos["folder"]), "--allow", "C1")
        assert indexed.exit_code == 0, indexed.output
        assert "indexing through it" in indexed.stdout
        outside = cli("index", str(tmp_path))  # the service indexes by path only inside its roots
        assert outside.exit_code != 0
        assert "answered 403" in str(outside.exception)
        assert "outside the folders this service may index" in str(outside.exception)
        assert "3 added, 0 unchanged, 1 duplicates, 0 pruned" in indexed.stdout
        assert "skipped 2 file(s):" in indexed.stdout

        via_service = cli("search", QUERY, "-k", "3", "--json")
        assert via_service.exit_code == 0, via_service.output
        assert f"via service at http://127.0.0.1:{port}" in via_service.stderr
        service_hits = json.loads(via_service.stdout)["hits"]
        assert len(service_hits) == 3

        body = {"dialog": {"caption": QUERY}, "k": 3, "filter": {"allowed": ["C1"]}}
        assert httpx.post(f"{url}/v1/search", json=body).status_code == 401
        with ThreadPoolExecutor(6) as pool:  # concurrent requests share the model
            answers = list(
                pool.map(lambda _: httpx.post(f"{url}/v1/search", json=body, headers=auth), range(6))
            )
        assert all(a.status_code == 200 for a in answers)
        assert {tuple(h["id"] for h in a.json()["hits"]) for a in answers} == {
            tuple(h["id"] for h in service_hits)
        }
        thumb = httpx.get(url + service_hits[0]["thumbnail_url"], headers=auth)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"

        # a CLI that does not find the service, while it holds the store, says so
        monkeypatch.setenv("CHATIR_SERVICE_URL", f"http://127.0.0.1:{_free_port()}")
        blocked = cli("index", str(photos["folder"]))
        assert isinstance(blocked.exception, ServiceUnavailableError)
        assert "in use by another process" in str(blocked.exception)
        monkeypatch.setenv("CHATIR_SERVICE_URL", url)

    assert not thread.is_alive()
    # service stopped: the store lock is released and the CLI searches it directly, same answer
    local = cli("search", QUERY, "-k", "3", "--json")
    assert local.exit_code == 0, local.output
    assert "via local embedded store" in local.stderr
    assert [h["id"] for h in json.loads(local.stdout)["hits"]] == [h["id"] for h in service_hits]


def test_cli_waits_for_a_service_that_is_still_loading(monkeypatch):
    """The client half of the 503 "starting" protocol (the server half is tested in test_service_api)."""
    from chatir.settings import Settings
    from retriever_service import cli as service_cli

    monkeypatch.setattr(time, "sleep", lambda _s: None)
    seen: list[str] = []
    ready_after = 3

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/readyz" and len(seen) < ready_after:
            return httpx.Response(503, json={"error": "starting", "detail": {"state": "starting"}})
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"status": "ready"})
        if len(seen) == 1:
            return httpx.Response(503, json={"error": "starting", "detail": {"state": "starting"}})
        return httpx.Response(200, json={"hits": [], "model": "m", "took_ms": 1.0})

    settings = Settings(service_url="http://service.test")
    with httpx.Client(base_url="http://service.test", transport=httpx.MockTransport(handler)) as client:
        response = service_cli._request(client, settings, "POST", "/v1/search", json={})
    assert response.status_code == 200
    assert seen == ["POST /v1/search", "GET /readyz", "GET /readyz", "POST /v1/search"]


def test_convert_checkpoint_reports_a_missing_file(cli, tmp_path):
    from chatir.errors import ChatIRError

    result = cli("convert-checkpoint", str(tmp_path / "chatir_weights.ckpt"), str(tmp_path / "out"))
    assert isinstance(result.exception, ChatIRError) and "does not exist" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_cli_module_imports_stay_light():
    import subprocess
    import sys

    heavy = "{'torch', 'transformers', 'qdrant_client', 'uvicorn', 'fastapi'}"
    code = f"import sys, retriever_service.cli; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]"


def test_a_second_serve_on_a_held_store_exits_naming_the_holder_and_clients_follow_the_run_file(
    tiny_clip_dir, photos, tmp_path
):
    """Real processes (issue #13, 8 / #14, 2): `chatir serve` A holds the store on some port; a second
    `chatir serve` on the same store exits 1 naming A's URL, and `chatir search` configured with a dead
    CHATIR_SERVICE_URL finds A through the run file instead of failing on the locked store."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "CHATIR_HOME": str(tmp_path / "home"),
        "CHATIR_MODEL": str(tiny_clip_dir),
        "CHATIR_DEVICE": "cpu",
        "CHATIR_SERVICE_URL": f"http://127.0.0.1:{_free_port()}",  # nobody listens there
        "CHATIR_INDEX_ROOTS": str(photos["folder"]),
    }
    for name in ("CHATIR_API_KEY", "QDRANT_URL", "CHATIR_QDRANT_URL", "CHATIR_COLLECTION"):
        env.pop(name, None)
    chatir = [sys.executable, "-c", "from frontends.main import main; main()"]
    port_a = _free_port()
    holder = subprocess.Popen(
        [*chatir, "serve", "--port", str(port_a)],
        env=env,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url_a = f"http://127.0.0.1:{port_a}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url_a + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert holder.poll() is None and time.monotonic() < deadline, "the first service did not start"
            time.sleep(0.3)
        second = subprocess.run(
            [*chatir, "serve", "--port", str(_free_port())],
            env=env,
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 1, second.stderr[-2000:]
        assert "could not start" in second.stderr and url_a in second.stderr
        assert f"pid {holder.pid}" in second.stderr

        indexed = subprocess.run(
            [*chatir, "index", str(photos["folder"]), "--allow", "C1"],
            env=env,
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert indexed.returncode == 0, indexed.stderr[-2000:]
        found = subprocess.run(
            [*chatir, "search", QUERY, "-k", "2", "--json"],
            env=env,
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert found.returncode == 0, found.stderr[-2000:]
        assert f"via service at {url_a}" in found.stderr
        assert len(json.loads(found.stdout)["hits"]) == 2
    finally:
        holder.terminate()
        holder.wait(timeout=60)
    assert not list((tmp_path / "home" / "run").glob("service-*.json"))  # withdrawn at a clean stop
