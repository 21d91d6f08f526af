"""``file_shared``: images shared in channels the bot is in are indexed as they arrive -- except the bot's own
uploads (the thumbnails and "Here it is" originals it posts come back as ``file_shared`` events: indexing them
would add copies of images that are already indexed, under the channel they were shown in)."""

from __future__ import annotations

import logging

from slack_bolt import App

from frontends.slack.listeners.deps import SlackDeps, just_ack

logger = logging.getLogger(__name__)


def register(app: App, deps: SlackDeps) -> None:
    def index_file(event: dict, context) -> None:
        if not deps.index_shared_files:
            return
        channel = event.get("channel_id")
        if not channel:
            return
        if event.get("user_id") and event.get("user_id") == context.get("bot_user_id"):
            logger.debug("not indexing %s: the bot's own upload", event.get("file_id"))
            return
        try:
            deps.indexer.index_shared_file(event["file_id"], channel)
        except Exception as error:  # noqa: BLE001 - a bad file must never take the bot down
            logger.warning("could not index shared file %s: %s", event.get("file_id"), error)

    app.event("file_shared")(ack=just_ack, lazy=[index_file])
