"""The demo's web chat and the terminal chat record how their searches end, and ``chatir stats`` reports
them: the demo's own stack (a real retriever service on a tiny CLIP, the world gallery, the engine that
``chatir demo`` and ``chatir chat`` build), driven as a person would, then the command run as a person would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.outcomes import OutcomeLog
from frontends.terminal import run_chat
from tests import test_frontends_web as web_chat
from tests.test_frontends_web import new_conversation, say, scripted

ROOT = Path(__file__).resolve().parents[1]
# the demo stack and its web chat (pytest fixtures)
stack = web_chat.stack
web = web_chat.web


def test_the_web_chat_and_the_terminal_record_outcomes_and_stats_reports_them(web, stack):
    settings = stack.local.settings
    cid = new_conversation(web)
    started = say(web, cid, "there is a big red star")
    say(web, cid, "no")
    answered = web.get(f"/api/conversations/{cid}").json()
    pick = answered["hits"][2]
    chosen = web.post(f"/api/conversations/{cid}/choose", json={"image_id": pick["id"]}).json()
    assert chosen["state"] == "found" and started["state"] == "asking"
    other = new_conversation(web)
    say(web, other, "a green ring")
    assert web.post(f"/api/conversations/{other}/restart").status_code == 200

    run_chat(
        stack.engine,
        stack.scope,
        read=scripted(["a big yellow square", "#1", "quit"]),
        write=lambda _: None,
        inline_images=False,
    )

    log = OutcomeLog(settings.outcomes_db)
    ended = [(s.frontend, s.outcome, s.found_round, s.found_rank) for s in log.searches() if s.outcome]
    log.close()
    assert ended == [("web", "found", 1, 3), ("web", "started_over", None, None), ("terminal", "found", 0, 1)]

    env = {**os.environ, "CHATIR_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "frontends.main", "stats", "--since", "1h"]
    text = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "front-end: terminal" in text and "front-end: web" in text and "questioner: info_gain" in text
    rows = json.loads(
        subprocess.run(
            [*command, "--json"], env=env, capture_output=True, text=True, timeout=120, check=True
        ).stdout
    )
    overall = rows[0]
    assert overall["group"] == "all" and overall["ended"] == 3
    assert abs(overall["success_rate"] - 2 / 3) < 1e-9 and overall["turns_mean"] == 0.5
    assert overall["hits_at"]["1"] == 1 / 3 and overall["hits_at"]["5"] == 2 / 3
