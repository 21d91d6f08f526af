"""``chatir demo`` and ``chatir chat``: the demo's steps on a tiny model and a small world gallery.

The first run generates and indexes the gallery and serves the web chat; later runs generate nothing and
embed nothing; a smaller gallery removes the surplus images from the folder and the index.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from chatir.errors import ChatIRError
from chatir.settings import get_settings
from frontends.demo import DEMO_WORLD_SEED, demo_settings, demo_stack, ensure_gallery, gallery_dir, run_demo
from retriever_service.index.records import file_content_id
from tests.frontend_support import frontend_settings, small_world_bank

QUIET = {"progress": False, "say": lambda _: None}


def test_run_demo_serves_the_web_chat_then_later_runs_reuse_everything(tiny_clip_dir, tmp_path):
    settings = frontend_settings(tiny_clip_dir, tmp_path, port=0)
    ready, stop, said, failures = [], threading.Event(), [], []

    def on_ready(url: str) -> None:
        ready.append(url)
        try:
            assert "ChatIR" in httpx.get(url, timeout=10).text
            assert httpx.get(f"{url}/api/info", timeout=10).json()["demo_targets"] is True
            cid = httpx.post(f"{url}/api/conversations", timeout=10).json()["conversation_id"]
            target = httpx.post(f"{url}/api/conversations/{cid}/target", timeout=10).json()
            assert httpx.get(f"{url}{target['thumbnail']}", timeout=10).status_code == 200
        except (AssertionError, httpx.HTTPError, ValueError) as error:  # reported by the test thread
            failures.append(error)
        finally:
            stop.set()

    def demo() -> None:
        try:
            run_demo(
                settings,
                port=0,
                gallery_size=12,
                open_browser=False,
                say=said.append,
                on_ready=on_ready,
                stop=stop,
                bank=small_world_bank(4),
            )
        except Exception as error:  # noqa: BLE001 - reported by the test thread
            failures.append(error)
            stop.set()

    thread = threading.Thread(target=demo)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the demo did not stop"
    assert not failures, failures
    assert ready and ready[0].startswith("http://127.0.0.1:")
    log = "\n".join(said)
    assert "[2/4] gallery: 12 images" in log and "generated" in log
    assert "index: 12 added, 0 unchanged" in log and "Ready in" in log

    # a later run: nothing generated, nothing embedded
    with demo_stack(
        settings, gallery_size=12, service_port=0, bank=small_world_bank(4), warm_up=False, **QUIET
    ) as stack:
        assert stack.index_report.added == 0 and stack.index_report.unchanged == 12
        assert stack.local.service.count() == 12
        for _ in range(5):  # "show me a target" gives the index's id of a gallery image
            target = stack.targets()
            assert stack.local.service.record(target).id == target
        assert {file_content_id(path) for path in stack.files} == {
            r.id for r in stack.local.service.index.iter_records()
        }

    # a smaller gallery: the surplus leaves the folder and the index
    with demo_stack(
        settings, gallery_size=8, service_port=0, bank=small_world_bank(4), warm_up=False, **QUIET
    ) as stack:
        assert stack.index_report.pruned == 4 and stack.local.service.count() == 8
        assert len(list((gallery_dir(settings) / "images").rglob("*.png"))) == 8


def test_gallery_is_regenerated_only_when_incomplete(tmp_path):
    files, generated = ensure_gallery(tmp_path, 6, progress=False)
    assert generated and all(path.is_file() for path in files) and DEMO_WORLD_SEED == 2024
    files[3].unlink()
    again, generated = ensure_gallery(tmp_path, 6, progress=False)
    assert generated and again == files and files[3].is_file()
    assert ensure_gallery(tmp_path, 6, progress=False) == (files, False)


@pytest.fixture
def cli() -> typer.Typer:
    from frontends.cli import register

    app = typer.Typer()
    register(app)
    return app


def test_demo_and_chat_commands_are_registered(cli):
    runner = CliRunner()
    demo_help = runner.invoke(cli, ["demo", "--help"])
    assert demo_help.exit_code == 0
    for option in ("--port", "--gallery-size", "--no-browser"):
        assert option in demo_help.output
    chat_help = runner.invoke(cli, ["chat", "--help"])
    assert chat_help.exit_code == 0 and "--demo" in chat_help.output
    assert "slack" in runner.invoke(cli, ["--help"]).output  # the Slack commands stay registered


def test_chat_command_talks_to_the_running_service(cli, tiny_clip_dir, tmp_path, monkeypatch):
    settings = frontend_settings(tiny_clip_dir, tmp_path)
    with demo_stack(
        settings, gallery_size=8, service_port=0, bank=small_world_bank(4), warm_up=False, **QUIET
    ) as stack:
        for name, value in {
            "CHATIR_MODEL": str(tiny_clip_dir),
            "CHATIR_HOME": str(tmp_path),
            "CHATIR_DEVICE": "cpu",
            "CHATIR_SERVICE_URL": stack.local.url,
            "CHATIR_QUESTIONER": "info_gain",
            "CHATIR_QUESTION_BANK": "generic",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, ["chat", "--no-previews"], input="a red star\nyes\n#1\nquit\n")
            monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "another-home"))
            get_settings.cache_clear()
            wrong = CliRunner().invoke(cli, ["chat", "--demo"], input="quit\n")
        finally:
            get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "Top matches after your description:" in result.output
    assert "Top matches after 1 answer:" in result.output and "Found it:" in result.output
    # a service holding another store is not the demo's: --demo refuses it instead of searching elsewhere
    assert wrong.exit_code != 0 and "does not serve the demo gallery" in str(wrong.exception)


class CountingModel:
    """The tiny model, counting the texts it embeds (``sign`` -1 makes it "another model")."""

    def __init__(self, model, sign: float = 1.0) -> None:
        self.model, self.sign, self.texts = model, sign, 0

    def encode_texts(self, texts):
        self.texts += len(texts)
        return self.sign * self.model.encode_texts(texts)


def test_question_bank_embeddings_persist_between_runs(tiny_clip_dir, tmp_path):
    from frontends.text_cache import PersistentTextEncoder
    from retriever_service.models import load_model

    model = load_model(str(tiny_clip_dir), device="cpu")
    texts = ["is it red? yes", "is it red? no", "how many shapes are there? two"]
    first = CountingModel(model)
    cached = PersistentTextEncoder(first, tmp_path / "bank.npz")
    vectors = cached.encode_texts(texts)
    assert first.texts == 1 + 3  # the probe, then the texts
    cached.save()

    again = CountingModel(model)
    reloaded = PersistentTextEncoder(again, tmp_path / "bank.npz")
    assert len(reloaded) == 3
    assert (reloaded.encode_texts(texts[::-1]) == vectors[::-1]).all()
    assert again.texts == 1  # only the probe: every text came from the file
    assert reloaded.sign == 1.0 and reloaded.model is model  # other attributes pass through

    other = CountingModel(model, sign=-1.0)
    fresh = PersistentTextEncoder(other, tmp_path / "bank.npz")
    assert len(fresh) == 0  # made by another model: ignored
    assert (fresh.encode_texts(texts) == -vectors).all() and other.texts == 1 + 3


def test_the_demo_runs_over_your_own_folder(tiny_clip_dir, tmp_path):
    """`chatir demo --images DIR`: the same stack over the user's images, in a collection of its own."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "my photos"
    (folder / "trip").mkdir(parents=True)
    for i in range(6):
        pixels = np.random.default_rng(i).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "trip" / f"beach{i}.png")
    (folder / "notes.txt").write_text("not an image")
    settings = frontend_settings(tiny_clip_dir, tmp_path / "home")
    with demo_stack(
        settings, service_port=0, bank=small_world_bank(4), warm_up=False, images=folder, **QUIET
    ) as stack:
        assert len(stack.files) == 6 and stack.index_report.added == 6
        assert str(folder) in stack.about and stack.examples == ()
        result = stack.engine.handle("own:1", "a photo from the beach", stack.scope)
        assert result.hits and all(Path(h.uri).is_relative_to(folder) for h in result.hits)
        assert stack.local.settings.collection != demo_settings(settings).collection
    (tmp_path / "empty").mkdir()
    with (
        pytest.raises(ChatIRError, match="no image files"),
        demo_stack(settings, service_port=0, warm_up=False, images=tmp_path / "empty", **QUIET),
    ):
        pass
