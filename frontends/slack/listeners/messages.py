"""``message``: direct messages to the bot, and replies in threads where a search is going on."""

from __future__ import annotations

from slack_bolt import App

from frontends.slack.conversation import Place, is_direct_message
from frontends.slack.listeners.deps import SlackDeps, just_ack

IGNORED_SUBTYPES = {"message_changed", "message_deleted", "bot_message", "channel_join", "channel_leave"}


def register(app: App, deps: SlackDeps) -> None:
    def handle_message(event: dict, body: dict, client, context) -> None:
        if event.get("bot_id") or event.get("subtype") in IGNORED_SUBTYPES:
            return
        text = (event.get("text") or "").strip()
        bot_user_id = context.get("bot_user_id") or ""
        if not text or (bot_user_id and f"<@{bot_user_id}>" in text):
            return  # mentions are handled by the app_mention listener
        channel = event["channel"]
        team = body.get("team_id", "")
        if is_direct_message(channel):
            place = Place(team=team, channel=channel, thread_ts=event.get("thread_ts"))
        elif event.get("thread_ts"):
            place = Place(team=team, channel=channel, thread_ts=event["thread_ts"])
            if not deps.conversations.exists(place):
                return  # a thread the bot is not searching in
        else:
            return  # ordinary channel chatter
        deps.conversations.message(client, place, user_id=event.get("user", ""), text=text)

    app.event("message")(ack=just_ack, lazy=[handle_message])
