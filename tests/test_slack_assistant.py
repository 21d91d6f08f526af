"""The assistant side panel end to end: the real bolt ``App`` (with bolt's ``Assistant`` middleware) receives
payloads shaped like Slack's documented ``assistant_thread_started``, ``assistant_thread_context_changed`` and
``message.im`` events, talks to the local Slack Web API fake and to a real retriever service on a tiny model;
outcomes land in the real outcome log.

Workspace (tests/test_slack_app.py): #general (C_GENERAL: U1, U2), #secret (C_SECRET: U2 only), U1's DM with
the bot D_U1 (U2's: D_U2). Images: two public, three from #general, three from #secret.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from slack_bolt.request import BoltRequest

from agent.outcomes import OutcomeLog
from chatir.schemas import PUBLIC, Hit
from chatir.scope import SearchScope
from frontends.slack.assistant_threads import AssistantThreads
from frontends.slack.blocks import HELPFUL, SCOPE_ALL, THIS_ONE
from frontends.slack.prompts import EXAMPLES, suggested_prompts
from tests import test_slack_app as channel_flow
from tests.fakes.slack_api import TEAM_ID
from tests.test_slack_app import make_app, mention, send_action, send_event, shown_ids, signed, turn_updates

# the channel flow's workspace, retriever service and settings (pytest fixtures)
retriever = channel_flow.retriever
slack = channel_flow.slack
settings = channel_flow.settings

pytest.importorskip("retriever_service.index", reason="the image index is not built yet")

THREAD = "1700005000.000100"


def thread_event(
    kind: str, *, user: str = "U1", dm: str = "D_U1", viewing: str | None = "C_GENERAL", ts=THREAD
):
    """``assistant_thread_started`` / ``assistant_thread_context_changed`` as Slack documents them."""
    context = {"channel_id": viewing, "team_id": TEAM_ID, "enterprise_id": ""} if viewing else {}
    return {
        "type": kind,
        "assistant_thread": {"user_id": user, "context": context, "channel_id": dm, "thread_ts": ts},
        "event_ts": f"{time.time():.6f}",
    }


def start_thread(app, settings, **options):
    """The thread start, then a wait until the bot stored the thread (as the person reads the greeting)."""
    event = thread_event("assistant_thread_started", **options)
    send_event(app, event)
    wait_stored(settings, event["assistant_thread"], lambda stored: bool(stored.user_id))


def change_context(app, settings, **options):
    """The context change, then a wait until the bot stored it (bolt runs the listener in a thread of its own;
    in Slack the change comes long before the person types)."""
    event = thread_event("assistant_thread_context_changed", **options)
    send_event(app, event)
    channel = event["assistant_thread"]["context"].get("channel_id")
    wait_stored(settings, event["assistant_thread"], lambda stored: stored.viewed_channel == channel)


def wait_stored(settings, thread: dict, done) -> None:
    threads = AssistantThreads(settings.home / "slack" / "assistant.sqlite")
    deadline = time.monotonic() + 10
    while True:
        stored = threads.get(thread["channel_id"], thread["thread_ts"])
        if stored is not None and done(stored):
            break
        assert time.monotonic() < deadline, f"the bot did not store {thread}"
        time.sleep(0.02)
    threads.close()


def say(app, text: str, *, user: str = "U1", dm: str = "D_U1", ts: str = THREAD, n: int = 0):
    """The person's message in the panel's thread: ``message.im`` with a ``thread_ts``."""
    message_ts = f"{float(ts) + 1 + n:.6f}"
    return send_event(
        app,
        {
            "type": "message",
            "user": user,
            "text": text,
            "ts": message_ts,
            "thread_ts": ts,
            "channel": dm,
            "channel_type": "im",
            "event_ts": message_ts,
        },
    )


def replies(slack, count: int, dm: str = "D_U1"):
    """The bot's result messages in the panel (posted once per turn, with blocks and buttons)."""
    return slack.wait_for(
        "chat.postMessage",
        count,
        timeout=30,
        where=lambda c: (
            c.args.get("channel") == dm
            and any(b.get("type") == "actions" for b in c.args.get("blocks") or [])
            and "Hi!" not in c.args.get("text", "")
        ),
    )


def click_in_message(app, action_id: str, value: str, *, message: dict, user: str = "U1"):
    """A ``block_actions`` payload as Slack sends it for a button in a bot message (with that message's
    blocks), signed like every request."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "user": {"id": user},
        "api_app_id": "A1",
        "channel": {"id": message["channel"]},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"]},
        "message": {
            "type": "message",
            "ts": message["ts"],
            "thread_ts": message.get("thread_ts"),
            "text": message.get("text", ""),
            "blocks": message.get("blocks", []),
        },
        "trigger_id": "t1",
        "actions": [
            {"action_id": action_id, "value": value, "type": "button", "block_id": "b", "action_ts": "1"}
        ],
    }
    raw = urlencode({"payload": json.dumps(payload)})
    response = app.dispatch(BoltRequest(body=raw, headers=signed(raw, "application/x-www-form-urlencoded")))
    assert response.status == 200, response.body


def context_text(call) -> str:
    return " ".join(
        e.get("text", "")
        for b in call.args.get("blocks") or []
        if b["type"] == "context"
        for e in b["elements"]
    )


def test_thread_started_greets_says_what_is_searched_and_suggests_prompts(settings, slack):
    app = make_app(settings)
    start_thread(app, settings)
    greeting = slack.wait_for("chat.postMessage", where=lambda c: c.args.get("channel") == "D_U1")[0]
    assert greeting.args["thread_ts"] == THREAD and "Describe an image" in greeting.args["text"]
    assert "<#C_GENERAL>" in context_text(greeting)  # the channel U1 is viewing (and is a member of)
    # bolt's say() keeps the thread context in the message metadata, read from our durable store
    assert greeting.args["metadata"]["event_payload"]["channel_id"] == "C_GENERAL"
    prompts = slack.wait_for("assistant.threads.setSuggestedPrompts")[0].args
    assert prompts["channel_id"] == "D_U1" and prompts["thread_ts"] == THREAD
    assert 1 <= len(prompts["prompts"]) <= 4
    assert [p["message"] for p in prompts["prompts"]] == list(EXAMPLES["generic"])  # no captions indexed


def test_from_thread_start_to_a_recorded_outcome(settings, slack, retriever):
    """thread started -> prompts -> description -> status -> results -> answer -> pick -> helpful -> log."""
    _, groups = retriever
    app = make_app(settings)
    start_thread(app, settings)
    slack.wait_for("assistant.threads.setSuggestedPrompts")
    say(app, "a bright orange picture")
    first = replies(slack, 1)[0]
    title = slack.wait_for("assistant.threads.setTitle")[0].args
    assert title == {**title, "channel_id": "D_U1", "thread_ts": THREAD, "title": "a bright orange picture"}
    status = slack.wait_for("assistant.threads.setStatus")[0].args
    assert status["status"] == "Searching the images you may see…" and status["thread_ts"] == THREAD
    assert first.args["thread_ts"] == THREAD
    ids = shown_ids(first)
    assert ids and {groups[i] for i in ids} <= {PUBLIC, "C_GENERAL"}
    assert "Searching *<#C_GENERAL>* and public images" in context_text(first)
    assert any(
        e.get("action_id") == SCOPE_ALL
        for b in first.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    )
    assert not slack.calls_to("chat.update")  # the panel shows a status, not a "Searching…" message

    say(app, "yes", n=1)  # the answer to the question
    second = replies(slack, 2)[1]
    assert "round 1" in json.dumps(second.args["blocks"])
    assert len(slack.calls_to("assistant.threads.setTitle")) == 1  # the title is the first description's
    assert len(slack.calls_to("assistant.threads.setStatus")) == 2

    picked = shown_ids(second)[1]
    send_action(
        app,
        action_id=f"{THIS_ONE}_2",
        value=picked,
        channel="D_U1",
        message_ts="1700005998.000100",
        thread_ts=THREAD,
    )
    found = slack.wait_for("chat.postMessage", where=lambda c: "Found it" in c.args.get("text", ""))[0]
    assert len(slack.calls_to("assistant.threads.setStatus")) == 3  # the pick is a panel turn too
    original = slack.wait_for("files.completeUploadExternal", where=lambda c: c.args.get("thread_ts"))[0]
    assert original.args["channel_id"] == "D_U1" and original.args["thread_ts"] == THREAD
    assert any(b.get("block_id") == HELPFUL for b in found.args["blocks"])  # "was this helpful?"
    click_in_message(app, f"{HELPFUL}_yes", "yes", message={**found.args, "ts": "1700005999.000100"})
    thanked = slack.wait_for("chat.update", where=lambda c: "feedback" in c.args.get("text", ""))[0]
    assert thanked.args["ts"] == "1700005999.000100"
    kept = json.dumps(thanked.args["blocks"])
    assert "Found it" in kept and "noted as helpful" in kept and HELPFUL not in kept  # the control is gone

    log = OutcomeLog(settings.outcomes_db)
    searches = log.searches()
    assert [(s.frontend, s.outcome, s.found_round, s.found_rank, s.helpful) for s in searches] == [
        ("slack", "found", 1, 2, True)
    ]
    assert searches[0].questioner == "random"
    raw = (
        settings.outcomes_db.read_bytes() + settings.outcomes_db.with_name("outcomes.sqlite-wal").read_bytes()
    )
    assert b"orange" not in raw and b"D_U1" not in raw  # no text, no Slack ids


def test_a_context_change_to_a_channel_the_person_is_not_in_never_widens(settings, slack, retriever):
    _, groups = retriever
    app = make_app(settings)
    start_thread(app, settings, viewing="C_GENERAL")
    change_context(app, settings, viewing="C_SECRET")  # U1 is not a member of #secret
    say(app, "secret yellow purple black")
    reply = replies(slack, 1)[0]
    assert {groups[i] for i in shown_ids(reply)} == {PUBLIC}
    text = context_text(reply)
    assert "public images only" in text and "not a member of <#C_SECRET>" in text
    assert all(c.args["user"] == "U1" for c in slack.calls_to("users.conversations"))

    # positive control: U2 is in #secret, and viewing it searches it
    start_thread(app, settings, user="U2", dm="D_U2", viewing="C_GENERAL", ts="1700005100.000100")
    change_context(app, settings, user="U2", dm="D_U2", viewing="C_SECRET", ts="1700005100.000100")
    say(app, "secret yellow purple black", user="U2", dm="D_U2", ts="1700005100.000100")
    other = replies(slack, 1, dm="D_U2")[0]
    assert "C_SECRET" in {groups[i] for i in shown_ids(other)}
    assert {groups[i] for i in shown_ids(other)} <= {PUBLIC, "C_SECRET"}


def test_a_context_change_applies_to_the_next_search_not_the_one_under_way(settings, slack, retriever):
    _, groups = retriever
    app = make_app(settings)
    start_thread(app, settings, user="U2", dm="D_U2", viewing="C_GENERAL")
    say(app, "a picture", user="U2", dm="D_U2")
    replies(slack, 1, dm="D_U2")
    change_context(app, settings, user="U2", dm="D_U2", viewing="C_SECRET")
    say(app, "no", user="U2", dm="D_U2", n=1)  # an answer: same search, same scope
    answer = replies(slack, 2, dm="D_U2")[1]
    assert {groups[i] for i in shown_ids(answer)} <= {PUBLIC, "C_GENERAL"}
    assert "<#C_SECRET>" in context_text(answer) and "start over" in context_text(answer)
    say(app, "start over", user="U2", dm="D_U2", n=2)
    replies(slack, 3, dm="D_U2")
    say(app, "a yellow picture", user="U2", dm="D_U2", n=3)  # a new search: the channel viewed now
    fresh = replies(slack, 4, dm="D_U2")[3]
    assert {groups[i] for i in shown_ids(fresh)} <= {PUBLIC, "C_SECRET"}
    assert "Searching *<#C_SECRET>*" in context_text(fresh)


def test_widening_to_all_my_channels_reruns_the_search_within_membership(settings, slack, retriever):
    _, groups = retriever
    app = make_app(settings.model_copy(update={"top_k": 8}))
    start_thread(app, settings, viewing="C_GENERAL")
    say(app, "a picture")
    first = replies(slack, 1)[0]
    assert {groups[i] for i in shown_ids(first)} == {PUBLIC, "C_GENERAL"}
    send_action(
        app,
        action_id=SCOPE_ALL,
        value=SCOPE_ALL,
        channel="D_U1",
        message_ts="1700005997.000100",
        thread_ts=THREAD,
    )
    wider = replies(slack, 2)[1]
    assert "all your channels" in context_text(wider)
    assert {groups[i] for i in shown_ids(wider)} == {PUBLIC, "C_GENERAL"}  # U1's channels: still no #secret
    assert any(
        e.get("text", {}).get("text") == "Only the channel I'm viewing"
        for b in wider.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    )


def test_a_restart_in_the_middle_of_an_assistant_thread(settings, slack, retriever):
    _, groups = retriever
    start_thread(make_app(settings), settings, viewing="C_GENERAL")
    first_app = make_app(settings)
    say(first_app, "a bright picture")
    replies(slack, 1)
    restarted = make_app(settings)  # a new process: new App, engine, thread store on the same files
    say(restarted, "yes", n=1)
    second = replies(slack, 2)[1]
    assert "round 1" in json.dumps(second.args["blocks"])  # the same search continued
    assert {groups[i] for i in shown_ids(second)} <= {PUBLIC, "C_GENERAL"}
    assert "<#C_GENERAL>" in context_text(second)  # the thread context survived too
    assert len(slack.calls_to("assistant.threads.setStatus")) == 2  # still handled as a panel thread
    assert not slack.calls_to("chat.update")


def test_an_ordinary_dm_thread_keeps_the_dm_flow(settings, slack, retriever):
    """A workspace without the panel: DM thread replies reach the same assistant listener, which hands them
    to the channel flow ("Searching…" message updated in place, DM scope)."""
    _, groups = retriever
    app = make_app(settings)
    say(app, "a picture", ts="1700006000.000100")
    update = slack.wait_for("chat.update", where=lambda c: bool(c.args.get("blocks")), timeout=30)[0]
    assert update.args["channel"] == "D_U1"
    assert {groups[i] for i in shown_ids(update)} <= {PUBLIC, "C_GENERAL"}
    assert not slack.calls_to("assistant.threads.setStatus")
    assert slack.calls_to("chat.postMessage")[0].args["thread_ts"] == "1700006000.000100"


class CaptionedSearcher:
    """The engine's searcher protocol over a fixed list (for the prompt wording only)."""

    def __init__(self, hits):
        self.hits = hits
        self.scopes = []

    def search(self, dialog, *, k, scope, with_vectors=False):
        self.scopes.append(scope)
        return [h for h in self.hits if scope.admits(allowed=h.tags, source=None, tags=[])][:k]


def test_suggested_prompts_come_from_captions_in_scope_then_examples():
    def hit(i, caption, group):
        return Hit(
            id=f"{i:032x}", score=0.5, uri=f"/x/{i}.png", thumbnail_url="", caption=caption, tags=[group]
        )

    searcher = CaptionedSearcher(
        [
            hit(1, "a secret launch plan on a whiteboard", "C_SECRET"),
            hit(2, "a cat asleep on a keyboard", "C_GENERAL"),
            hit(3, "A cat asleep on a keyboard", PUBLIC),
            hit(4, None, PUBLIC),
            hit(5, "two people at a standup", PUBLIC),
        ]
    )
    prompts = suggested_prompts(searcher, SearchScope(allowed=["C_GENERAL", PUBLIC]), bank="world")
    messages = [p["message"] for p in prompts]
    assert messages[:2] == ["a cat asleep on a keyboard", "two people at a standup"]
    assert messages[2:] == list(EXAMPLES["world"][:2]) and prompts[0]["title"] == "A cat asleep on a keyboard"
    assert all("secret" not in m for m in messages)

    class Down:
        def search(self, *args, **kwargs):
            raise ConnectionError("service down")

    assert [p["message"] for p in suggested_prompts(Down(), SearchScope(), bank="x")] == list(
        EXAMPLES["generic"]
    )


def test_the_manifest_asks_for_what_the_panel_uses():
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "slack" / "manifest.yaml").read_text())
    assert manifest["features"]["assistant_view"]["assistant_description"]
    assert "assistant:write" in manifest["oauth_config"]["scopes"]["bot"]
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {"assistant_thread_started", "assistant_thread_context_changed", "message.im"} <= set(events)


def test_unsigned_assistant_events_are_refused(settings, slack):
    """Bolt's Assistant middleware runs after the request verification (a forged thread start posts nothing)."""
    app = make_app(settings)
    body = json.dumps(
        {"type": "event_callback", "team_id": TEAM_ID, "event": thread_event("assistant_thread_started")}
    )
    headers = {
        "content-type": ["application/json"],
        "x-slack-signature": ["v0=forged"],
        "x-slack-request-timestamp": [str(int(time.time()))],
    }
    assert app.dispatch(BoltRequest(body=body, headers=headers)).status == 401
    time.sleep(0.5)
    assert not slack.calls_to("chat.postMessage") and not slack.calls_to(
        "assistant.threads.setSuggestedPrompts"
    )


def test_a_pick_in_a_channel_thread_asks_was_this_helpful_too(settings, slack):
    app = make_app(settings)
    mention(app, "a picture", ts="1700007000.000100")
    first = turn_updates(slack, 1)[0]
    send_action(
        app,
        action_id=f"{THIS_ONE}_3",
        value=shown_ids(first)[2],
        channel="C_GENERAL",
        message_ts=first.args["ts"],
        thread_ts="1700007000.000100",
    )
    found = slack.wait_for("chat.update", where=lambda c: "Found it" in c.args.get("text", ""))[0]
    click_in_message(app, f"{HELPFUL}_no", "no", message={**found.args, "thread_ts": "1700007000.000100"})
    slack.wait_for("chat.update", where=lambda c: "feedback" in c.args.get("text", ""))
    log = OutcomeLog(settings.outcomes_db)
    assert [(s.frontend, s.outcome, s.found_round, s.found_rank, s.helpful) for s in log.searches()] == [
        ("slack", "found", 0, 3, False)
    ]


def test_feedback_is_thanked_even_when_the_outcome_log_fails(settings, slack):
    """The log's table gone behind its back (as a database outage would fail it): the thank-you still comes."""
    app = make_app(settings)
    mention(app, "a picture", ts="1700008000.000100")
    first = turn_updates(slack, 1)[0]
    send_action(
        app,
        action_id=f"{THIS_ONE}_1",
        value=shown_ids(first)[0],
        channel="C_GENERAL",
        message_ts=first.args["ts"],
        thread_ts="1700008000.000100",
    )
    found = slack.wait_for("chat.update", where=lambda c: "Found it" in c.args.get("text", ""))[0]
    with sqlite3.connect(settings.outcomes_db) as db:
        db.execute("DROP TABLE searches")
    click_in_message(app, f"{HELPFUL}_yes", "yes", message={**found.args, "thread_ts": "1700008000.000100"})
    thanked = slack.wait_for("chat.update", where=lambda c: "feedback" in c.args.get("text", ""))
    assert thanked
