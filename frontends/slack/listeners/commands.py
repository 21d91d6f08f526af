"""``/findimage a red star``: starts a search in a new thread of the channel where it was typed."""

from __future__ import annotations

from slack_bolt import App

from frontends.slack.conversation import Place
from frontends.slack.listeners.deps import SlackDeps

COMMAND = "/findimage"


def register(app: App, deps: SlackDeps) -> None:
    def ack_command(ack, command: dict) -> None:
        if not (command.get("text") or "").strip():
            ack(f"Usage: {COMMAND} <description of the image>, e.g. {COMMAND} a red star on blue")
        else:
            ack()

    def find_image(command: dict, client, respond) -> None:
        text = (command.get("text") or "").strip()
        if not text:
            return
        channel = command["channel_id"]
        try:
            root = client.chat_postMessage(
                channel=channel, text=f"<@{command['user_id']}> is looking for: {text}"
            )
        except Exception:  # noqa: BLE001 - any Slack refusal means the same to the user
            respond("I can't post in this channel: invite me with /invite @chatir, or DM me the description.")
            return
        place = Place(team=command.get("team_id", ""), channel=channel, thread_ts=root["ts"])
        deps.conversations.start(client, place, user_id=command["user_id"], text=text)

    app.command(COMMAND)(ack=ack_command, lazy=[find_image])
