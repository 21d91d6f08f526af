"""Buttons: "This one", "More", "None of these", "Start over"."""

from __future__ import annotations

import re

from slack_bolt import App

from frontends.slack.blocks import (
    HELPFUL,
    MORE,
    NONE_OF_THESE,
    SCOPE_ALL,
    SCOPE_CHANNEL,
    START_OVER,
    THIS_ONE,
)
from frontends.slack.conversation import Place, is_direct_message
from frontends.slack.listeners.deps import SlackDeps, just_ack


def _place(body: dict) -> Place:
    channel = body["channel"]["id"]
    message = body.get("message") or body.get("container") or {}
    thread = message.get("thread_ts")
    if thread is None and not is_direct_message(channel):
        thread = message.get("ts") or message.get("message_ts")
    team = (body.get("team") or {}).get("id", "")
    return Place(team=team, channel=channel, thread_ts=thread)


def register(app: App, deps: SlackDeps) -> None:
    def this_one(body: dict, client) -> None:
        deps.conversations.this_one(client, _place(body), body["actions"][0]["value"])

    def none_of_these(body: dict, client) -> None:
        deps.conversations.none_of_these(client, _place(body))

    def start_over(body: dict, client) -> None:
        deps.conversations.start_over(client, _place(body))

    def more(body: dict, client) -> None:
        deps.conversations.more(client, _place(body))

    def helpful(body: dict, client) -> None:
        answer = body["actions"][0]["value"] == "yes"
        deps.conversations.feedback(client, _place(body), helpful=answer, message=body.get("message") or {})

    def scope_all(body: dict, client) -> None:
        if deps.assistant is not None:
            deps.assistant.change_scope(client, _place(body), user_id=body["user"]["id"], mode="all")

    def scope_channel(body: dict, client) -> None:
        if deps.assistant is not None:
            deps.assistant.change_scope(client, _place(body), user_id=body["user"]["id"], mode="channel")

    app.action(re.compile(f"^{THIS_ONE}_\\d+$"))(ack=just_ack, lazy=[this_one])
    app.action(re.compile(f"^{HELPFUL}_(yes|no)$"))(ack=just_ack, lazy=[helpful])
    app.action(SCOPE_ALL)(ack=just_ack, lazy=[scope_all])
    app.action(SCOPE_CHANNEL)(ack=just_ack, lazy=[scope_channel])
    app.action(NONE_OF_THESE)(ack=just_ack, lazy=[none_of_these])
    app.action(START_OVER)(ack=just_ack, lazy=[start_over])
    app.action(MORE)(ack=just_ack, lazy=[more])
