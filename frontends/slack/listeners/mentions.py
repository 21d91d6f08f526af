"""``app_mention``: "@chatir a red star on blue" starts a search in that thread."""

from __future__ import annotations

from slack_bolt import App

from frontends.slack.conversation import Place, strip_mentions
from frontends.slack.listeners.deps import SlackDeps, just_ack


def register(app: App, deps: SlackDeps) -> None:
    def handle_mention(event: dict, body: dict, client) -> None:
        text = strip_mentions(event.get("text", ""))
        place = Place(
            team=body.get("team_id", ""),
            channel=event["channel"],
            thread_ts=event.get("thread_ts") or event["ts"],
        )
        if not text:
            client.chat_postMessage(
                channel=place.channel,
                thread_ts=place.thread_ts,
                text="Describe the image you are looking for, e.g. “a red star on a blue background”.",
            )
            return
        if event.get("thread_ts") and deps.conversations.exists(place):
            deps.conversations.message(client, place, user_id=event.get("user", ""), text=text)
        else:
            deps.conversations.start(client, place, user_id=event.get("user", ""), text=text)

    app.event("app_mention")(ack=just_ack, lazy=[handle_mention])
