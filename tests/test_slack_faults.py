"""The Slack bot as a real process (`chatir slack --http`) killed with SIGKILL in the middle of a turn, then started
again (issue #13): the conversation it was answering is intact and the next message in the thread is answered.

The bot talks to a real retriever service (tiny CLIP, in this process over HTTP) and to a fake of Slack's Web
API speaking its protocol; the kill lands while the bot waits out Slack's rate limit on the reply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from PIL import Image
from slack_sdk.signature import SignatureVerifier

from agent.state import ConversationStore
from chatir.schemas import PUBLIC, IndexRequest
from chatir.settings import Settings
from tests.fakes.slack_api import BOT_TOKEN, BOT_USER_ID, TEAM_ID, SlackAPIServer
from tests.test_tools_support import free_port, live_server

SECRET = "kill-test-secret"
pytestmark = pytest.mark.slow


@pytest.fixture
def service_url(tiny_clip_dir, tmp_path):
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    settings = Settings(model=str(tiny_clip_dir), home=tmp_path / "service", device="cpu", qdrant_url=None)
    folder = tmp_path / "images"
    folder.mkdir()
    for name, colour in {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 90, 230)}.items():
        Image.new("RGB", (48, 40), colour).save(folder / f"{name}.png")
    with RetrieverService.open(settings) as service:
        service.run_index(
            IndexRequest(paths=[str(folder)], source="C_GENERAL", allowed=[PUBLIC]), progress=False
        )
        with live_server(create_app(settings, service)) as url:
            yield url


def _start_bot(env: dict[str, str], port: int, log) -> subprocess.Popen:
    bot = subprocess.Popen(
        [sys.executable, "-c", "from frontends.main import main; main()", "slack", "--http", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if bot.poll() is not None:
            raise AssertionError(f"the bot exited with {bot.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return bot
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    bot.kill()
    raise AssertionError("the bot did not start")


def _mention(port: int, text: str, ts: str, thread_ts: str | None = None) -> None:
    event = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> {text}", "ts": ts,
             "channel": "C_GENERAL", "event_ts": ts, **({"thread_ts": thread_ts} if thread_ts else {})}  # fmt: skip
    body = json.dumps({"type": "event_callback", "team_id": TEAM_ID, "api_app_id": "A1", "event": event,
                       "event_id": f"Ev{ts}", "event_time": int(time.time()),
                       "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}]})  # fmt: skip
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature,
    }
    assert (
        httpx.post(f"http://127.0.0.1:{port}/slack/events", content=body, headers=headers).status_code == 200
    )


def test_a_bot_killed_mid_turn_keeps_the_conversation_and_answers_after_restart(service_url, tmp_path):
    with SlackAPIServer() as slack:
        slack.add_channel("C_GENERAL", ["U1", BOT_USER_ID])
        home = tmp_path / "bot"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "CHATIR_HOME": str(home),
            "CHATIR_SERVICE_URL": service_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.base_url + "/api/",
            "CHATIR_QUESTIONER": "random",
            "CHATIR_QUESTION_BANK": "generic",
        }
        port = free_port()
        with (tmp_path / "bot.log").open("w") as log:
            bot = _start_bot(env, port, log)
            try:
                slack.rate_limit("chat.update", times=2)  # the reply waits out Slack's rate limit ...
                _mention(port, "a red picture", ts="1700000100.000100")
                slack.wait_for("chat.update", 1, timeout=60)
                os.kill(bot.pid, signal.SIGKILL)  # ... and the bot dies mid-turn
                bot.wait(timeout=10)
                replied_before = len(slack.calls_to("chat.update"))

                bot = _start_bot(env, port, log)
                _mention(port, "the red one, I think", ts="1700000200.000100", thread_ts="1700000100.000100")
                slack.wait_for(
                    "chat.update",
                    replied_before + 1,
                    timeout=60,
                    where=lambda call: bool(call.args.get("blocks")),
                )
            finally:
                bot.kill()
                bot.wait(timeout=10)
        log_text = (tmp_path / "bot.log").read_text()
        assert "Traceback" not in log_text, log_text[-3000:]

    with ConversationStore(home / "conversations.sqlite") as store:
        states = [store.get(cid) for cid in store.ids()]
    assert len(states) == 1 and states[0] is not None
    dialog = states[0].dialog
    assert dialog is not None and dialog.caption == "a red picture"  # the turn the kill cut short was kept
    assert [r.answer for r in dialog.rounds] == ["the red one, I think"]  # and the next one carried on
