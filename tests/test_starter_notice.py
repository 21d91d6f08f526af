"""A service serving the starter says so (banner, /readyz, the Slack bot's first reply); a real model does not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from chatir.notices import STARTER_NOTICE
from chatir.schemas import IndexRequest
from chatir.settings import Settings
from tests.fakes.slack_api import BOT_TOKEN, BOT_USER_ID, SlackAPIServer
from tests.test_slack_app import SECRET, make_app, mention, send_event, turn_updates
from tests.test_tools_support import live_server


def _context_texts(call) -> list[str]:
    return [e["text"] for b in call.args["blocks"] if b["type"] == "context" for e in b.get("elements", [])]


@pytest.fixture(scope="module")
def starter_service(tmp_path_factory):
    from retriever_service.service import RetrieverService

    home = tmp_path_factory.mktemp("starter-home")
    settings = Settings(model="starter", home=home, device="cpu", qdrant_url=None)
    folder = home / "images"
    folder.mkdir()
    for i, colour in enumerate([(250, 10, 10), (10, 250, 10), (10, 10, 250)]):
        Image.new("RGB", (64, 64), colour).save(folder / f"{i}.png")
    with RetrieverService.open(settings) as service:
        service.run_index(IndexRequest(paths=[str(folder)]), progress=False)
        yield settings, service


def test_readyz_tells_about_the_starter_and_only_then(starter_service, tmp_path, tiny_clip_dir):
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    settings, service = starter_service
    with TestClient(create_app(settings, service)) as client:
        body = client.get("/readyz").json()
    assert body["model"] == "starter" and body["notice"] == STARTER_NOTICE
    assert "only understands the sample world" in STARTER_NOTICE and "CHATIR_MODEL" in STARTER_NOTICE

    real = Settings(model=str(tiny_clip_dir), home=tmp_path / "real", device="cpu", qdrant_url=None)
    with RetrieverService.open(real) as other, TestClient(create_app(real, other)) as client:
        assert client.get("/readyz").json()["notice"] is None


def test_the_slack_bots_first_reply_carries_the_notice(starter_service, tmp_path):
    from retriever_service.api import create_app

    service_settings, service = starter_service
    with live_server(create_app(service_settings, service)) as url, SlackAPIServer() as slack:
        slack.add_channel("C_GENERAL", ["U1", BOT_USER_ID])
        settings = Settings(
            model="starter",
            home=tmp_path / "bot",
            device="cpu",
            service_url=url,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=slack.base_url + "/api/",
            service_timeout_s=20,
        )
        app = make_app(settings)
        mention(app, "a red square", ts="1700000100.000100")
        first = turn_updates(slack, 1)[0]
        assert STARTER_NOTICE in _context_texts(first)
        send_event(  # the answer in the same thread: no second notice
            app,
            {
                "type": "message",
                "user": "U1",
                "text": "yes",
                "ts": "1700000101.000100",
                "thread_ts": "1700000100.000100",
                "channel": "C_GENERAL",
                "event_ts": "1700000101.000100",
            },
        )
        second = turn_updates(slack, 2)[1]
        assert STARTER_NOTICE not in _context_texts(second)


def test_serve_banner_names_the_starter_and_how_to_change_it(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CHATIR_HOME": str(tmp_path), "CHATIR_MODEL": "starter", "CHATIR_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "frontends.main", "serve"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline(), process.stdout.readline()]
    finally:
        process.terminate()
        process.wait(60)
    assert banner[0].startswith("serving model starter")
    assert banner[1].strip() == f"note: {STARTER_NOTICE}"
