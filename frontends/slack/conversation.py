"""One Slack turn: show "Searching…" in the thread, run the engine, update that message in place.

Conversation ids are ``slack:<team>:<channel>:<thread>`` so a conversation lives in exactly one thread
(or one direct-message channel) and survives a restart of the bot (the engine's state is durable).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient

from agent.engine import ConversationEngine, TurnResult
from chatir.errors import ChatIRError, ServiceUnavailableError
from chatir.schemas import SearchFilter
from frontends.slack.access import MembershipCache, scope_for
from frontends.slack.blocks import (
    fallback_text,
    found_blocks,
    helpful_blocks,
    searching_blocks,
    thanked_blocks,
    turn_blocks,
)
from frontends.slack.images import SlackImagePublisher

logger = logging.getLogger(__name__)

UNAVAILABLE = (
    "The image search is unavailable right now, so I couldn't use that message. "
    "Please send it again in a minute — nothing else was lost."
)
FAILED = "Something went wrong with that turn; please try again."
_MENTION = re.compile(r"<@[A-Z0-9]+>")


def strip_mentions(text: str) -> str:
    return _MENTION.sub(" ", text or "").strip()


def is_direct_message(channel_id: str) -> bool:
    return channel_id.startswith("D")


PanelTurn = Callable[[WebClient, "Place", Callable[[], TurnResult]], tuple[bool, TurnResult | None]]
"""(client, place, run) -> (whether the place is a panel thread and the turn ran there, its result)."""


@dataclass(frozen=True)
class Place:
    """Where a conversation lives: its channel and thread (``thread_ts`` None = top level of a DM)."""

    team: str
    channel: str
    thread_ts: str | None

    @property
    def conversation_id(self) -> str:
        return f"slack:{self.team}:{self.channel}:{self.thread_ts or 'dm'}"


class SlackConversations:
    """Runs engine turns for Slack places and renders them as thread messages."""

    def __init__(
        self,
        engine: ConversationEngine,
        publisher: SlackImagePublisher,
        membership: MembershipCache,
        top_k: int = 5,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.membership = membership
        self.top_k = top_k
        self.panel: PanelTurn | None = None
        """Runs turns of assistant-panel threads in the panel's style (set by :class:`SlackAssistant`)."""

    def scope(self, *, user_id: str, channel_id: str) -> SearchFilter:
        groups = scope_for(
            self.membership,
            user_id=user_id,
            channel_id=channel_id,
            is_direct_message=is_direct_message(channel_id),
        )
        return SearchFilter(allowed=groups)

    def exists(self, place: Place) -> bool:
        return self.engine.get(place.conversation_id) is not None

    # --- turns ------------------------------------------------------------------------------------
    def message(self, client: WebClient, place: Place, *, user_id: str, text: str) -> None:
        """A description or an answer typed by ``user_id``; the scope is fixed when the search starts."""
        scope = None if self.exists(place) else self.scope(user_id=user_id, channel_id=place.channel)
        self._turn(
            client,
            place,
            lambda: self.engine.handle(place.conversation_id, text, scope),
            first=scope is not None,
        )

    def start(self, client: WebClient, place: Place, *, user_id: str, text: str) -> None:
        scope = self.scope(user_id=user_id, channel_id=place.channel)
        self._turn(client, place, lambda: self.engine.start(place.conversation_id, text, scope), first=True)

    def none_of_these(self, client: WebClient, place: Place) -> None:
        self._turn(client, place, lambda: self.engine.reject_all(place.conversation_id))

    def more(self, client: WebClient, place: Place) -> None:
        self._turn(client, place, lambda: self.engine.more(place.conversation_id, self.top_k))

    def start_over(self, client: WebClient, place: Place) -> None:
        self._turn(client, place, lambda: self.engine.restart(place.conversation_id))

    def this_one(self, client: WebClient, place: Place, image_id: str) -> None:
        result = self._turn(client, place, lambda: self.engine.choose(place.conversation_id, image_id))
        if result is not None and result.chosen is not None:
            hit = result.chosen
            try:
                self.publisher.post_original(
                    image_id=hit.id,
                    title=hit.text or hit.id,
                    where=hit.source or hit.uri,
                    channel=place.channel,
                    thread_ts=place.thread_ts or "",
                    allowed=result.scope.allowed,
                )
            except Exception as error:  # noqa: BLE001 - the choice is made; the image post is a courtesy
                logger.warning("could not post the original of %s: %s", hit.id, error)

    def feedback(self, client: WebClient, place: Place, *, helpful: bool, message: dict) -> bool:
        """A "was this helpful?" answer: recorded with the conversation's latest pick, and the control in
        ``message`` (the action's message) replaced by a thank-you line."""
        recorded = False
        if self.engine.outcomes is not None:
            try:
                recorded = self.engine.outcomes.feedback(place.conversation_id, helpful)
            except Exception:  # a failing log (its database down) never costs the person a reply
                logger.exception("could not record the feedback of %s", place.conversation_id)
        if message.get("ts"):
            blocks = thanked_blocks(message.get("blocks") or [], helpful)
            client.chat_update(
                channel=place.channel, ts=message["ts"], text="Thanks for the feedback", blocks=blocks
            )
        return recorded

    def run_turn(self, place: Place, run: Callable[[], TurnResult]) -> tuple[TurnResult | None, str]:
        """(the turn's result, "") or (None, what to tell the person) -- a failed turn changes nothing."""
        try:
            return run(), ""
        except ServiceUnavailableError as error:
            logger.warning("retriever unavailable: %s", error)
            return None, UNAVAILABLE
        except ChatIRError as error:
            return None, str(error)
        except Exception:
            logger.exception("turn failed in %s", place.conversation_id)
            return None, FAILED

    def render(self, result: TurnResult) -> tuple[str, list[dict]]:
        """(fallback text, blocks) of a turn: its matches (thumbnails uploaded), or the pick."""
        if result.state == "found" and result.chosen is not None:
            asked = helpful_blocks() if self.engine.outcomes is not None else []  # no log: nothing to ask for
            return fallback_text(result), found_blocks(result.chosen) + asked
        # a "more" turn shows its new page (numbered on from the earlier ones), any other turn the top
        start = result.page_start
        shown = result.model_copy(update={"hits": result.hits[start : start + self.top_k]})
        file_ids = self.publisher.thumbnail_file_ids([h.id for h in shown.hits], allowed=result.scope.allowed)
        return fallback_text(result), turn_blocks(shown, file_ids, first_rank=start + 1)

    readiness: Callable[[], dict] | None = None
    """``GET /readyz`` of the retriever (set by the app): a conversation's first reply shows its ``notice``."""

    def _turn(
        self, client: WebClient, place: Place, run: Callable[[], TurnResult], *, first: bool = False
    ) -> TurnResult | None:
        if self.panel is not None:
            handled, result = self.panel(client, place, run)
            if handled:
                return result
        status = client.chat_postMessage(
            channel=place.channel, thread_ts=place.thread_ts, text="Searching…", blocks=searching_blocks()
        )
        status_ts = status["ts"]
        result, error = self.run_turn(place, run)
        if result is None:
            client.chat_update(channel=place.channel, ts=status_ts, text=error, blocks=[])
            return None
        text, blocks = self.render(result)
        notice = self._notice() if first else None
        if notice:
            blocks = [*blocks, {"type": "context", "elements": [{"type": "mrkdwn", "text": notice}]}]
        client.chat_update(channel=place.channel, ts=status_ts, text=text, blocks=blocks)
        return result

    def _notice(self) -> str | None:
        try:
            return (self.readiness() if self.readiness else {}).get("notice")
        except Exception:  # noqa: BLE001 -- a courtesy: never fails a turn
            return None
