"""The assistant side panel (Slack's "Agents & AI Apps" surface): the same engine, state and questioners as
the channel flow, in a thread of the person's DM with the bot.

- thread started: a greeting and suggested prompts suited to the index (:mod:`frontends.slack.prompts`);
- thread context changed: the channel being viewed is remembered (:mod:`frontends.slack.assistant_threads`);
  it becomes the default scope of the *next* search, always intersected with the channels the person is a
  member of (:func:`frontends.slack.access.assistant_scope`); a search under way keeps the scope it started
  with (the engine's rule);
- a message: the title is set from the first description, the status says "Searching the images you may
  see…" while the turn runs (no count: the index's size would tell of channels the person is not in), and the
  reply carries the usual matches and buttons plus which channel was searched and the one button that widens
  (all my channels) or narrows (only the channel I'm viewing) it.

A message in a DM thread the panel never opened (a workspace without the feature, or an ordinary DM thread)
is handled exactly as before: :meth:`SlackConversations.message`, DM scope, "Searching…" message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from agent.engine import ConversationEngine, TurnResult
from agent.intents import classify
from chatir.schemas import PUBLIC
from chatir.scope import SearchScope
from frontends.slack.access import AssistantScope, ScopeMode, assistant_scope
from frontends.slack.assistant_threads import AssistantThread, AssistantThreads
from frontends.slack.blocks import SCOPE_ALL, SCOPE_CHANNEL, scope_blocks
from frontends.slack.conversation import Place, SlackConversations
from frontends.slack.prompts import suggested_prompts

logger = logging.getLogger(__name__)

COMMANDS = ("restart", "reject_all", "pick", "more")
"""Intents that act on the search under way rather than describe a new image."""
MAX_TITLE_CHARS = 80
GREETING = (
    "Hi! Describe an image you are looking for — what is in it, colours, where it was shared — and I'll "
    "find it, asking a question or two when that helps."
)

StatusSetter = Callable[[str], Any]


STATUS = "Searching the images you may see…"
"""The panel's status line while a turn runs. It names no number: the index's size counts images in channels the
person is not in, and a scoped count would cost a second query per turn."""


def scope_label(scope: SearchScope) -> str:
    """How a conversation's stored scope reads to the person."""
    groups = [g for g in scope.allowed or [] if g != PUBLIC]
    if scope.allowed is not None and not groups:
        return "public images only"
    if len(groups) == 1 and groups[0].startswith(("C", "G")):
        return f"<#{groups[0]}>"
    return "all your channels"


class SlackAssistant:
    """Runs the assistant panel's turns through :class:`SlackConversations`' engine and rendering."""

    def __init__(
        self,
        conversations: SlackConversations,
        threads: AssistantThreads,
        *,
        bank: str = "generic",
    ) -> None:
        self.conversations = conversations
        self.threads = threads
        self.bank = bank
        conversations.panel = self.panel_turn  # buttons in panel threads get the panel's turns too

    @property
    def engine(self) -> ConversationEngine:
        return self.conversations.engine

    def scope_of(
        self, thread: AssistantThread, user_id: str, mode: ScopeMode | None = None
    ) -> AssistantScope:
        return assistant_scope(
            self.conversations.membership,
            user_id=user_id,
            viewed_channel=thread.viewed_channel,
            mode=mode or thread.mode,
        )

    # --- events -------------------------------------------------------------------------------------
    def thread_started(
        self,
        *,
        channel: str,
        thread_ts: str,
        user_id: str,
        context: dict[str, str] | None,
        say: Callable[..., Any],
        set_suggested_prompts: Callable[..., Any],
    ) -> None:
        """Greets, says what will be searched, and offers example descriptions from the person's images."""
        self.threads.started(channel=channel, thread_ts=thread_ts, user_id=user_id, context=context)
        thread = self.threads.get(channel, thread_ts)
        assert thread is not None
        scope = self.scope_of(thread, user_id)
        say(text=GREETING, blocks=[_section(GREETING), *self._scope_blocks(thread, scope.label, scope.note)])
        prompts = suggested_prompts(self.engine.searcher, SearchScope(allowed=scope.groups), bank=self.bank)
        try:
            set_suggested_prompts(prompts=prompts, title="Try describing an image like:")
        except Exception as error:  # noqa: BLE001 - the thread works without prompts
            logger.warning("could not set suggested prompts: %s", error)

    def context_changed(self, *, channel: str, thread_ts: str, user_id: str, context: dict[str, str]) -> None:
        """The person now views another channel: the next search defaults to it (if they may see it)."""
        self.threads.save(channel_id=channel, thread_ts=thread_ts, context=context)
        if user_id:
            self.conversations.membership.invalidate(user_id)  # they may just have joined or left it

    def message(
        self,
        client: WebClient,
        place: Place,
        *,
        user_id: str,
        text: str,
        set_status: StatusSetter | None = None,
        set_title: Callable[[str], Any] | None = None,
    ) -> TurnResult | None:
        """A message in an assistant thread: a new description, an answer, or a command."""
        thread = self.threads.get(place.channel, place.thread_ts)
        if thread is None:  # an ordinary DM thread: the channel flow, unchanged
            self.conversations.message(client, place, user_id=user_id, text=text)
            return None
        cid = place.conversation_id
        state = self.engine.get(cid)
        new_search = classify(text).kind not in COMMANDS and (
            state is None or state.status in ("awaiting_description", "found")
        )
        if new_search:
            scope = SearchScope(allowed=self.scope_of(thread, user_id).groups)  # the thread context, now

            def run() -> TurnResult:
                return self.engine.start(cid, text, scope)

            if set_title is not None and self.threads.mark_titled(place.channel, thread.thread_ts):
                _quietly(set_title, " ".join(text.split())[:MAX_TITLE_CHARS])
        else:

            def run() -> TurnResult:
                return self.engine.handle(cid, text)

        return self.turn(client, place, run, thread=thread, set_status=set_status)

    def change_scope(
        self, client: WebClient, place: Place, *, user_id: str, mode: ScopeMode
    ) -> TurnResult | None:
        """The widen / narrow button: the thread's mode changes and the search under way runs again with its
        description in the new scope (its answers are kept in the conversation's archive)."""
        thread = self.threads.get(place.channel, place.thread_ts)
        if thread is None or thread.user_id not in ("", user_id):
            return None  # not an assistant thread, or not this person's
        self.threads.set_mode(place.channel, thread.thread_ts, mode)
        thread = self.threads.get(place.channel, thread.thread_ts)
        assert thread is not None
        scope = self.scope_of(thread, user_id)
        state = self.engine.get(place.conversation_id)
        if state is None or state.dialog is None or state.status == "found":
            client.chat_postMessage(
                channel=place.channel,
                thread_ts=place.thread_ts,
                text=f"OK: new searches look in {scope.label}.",
                blocks=self._scope_blocks(thread, scope.label, scope.note),
            )
            return None
        caption = state.dialog.caption

        def run() -> TurnResult:
            return self.engine.start(place.conversation_id, caption, SearchScope(allowed=scope.groups))

        return self.turn(client, place, run, thread=thread)

    # --- one turn -----------------------------------------------------------------------------------
    def panel_turn(
        self, client: WebClient, place: Place, run: Callable[[], TurnResult]
    ) -> tuple[bool, TurnResult | None]:
        """A button's turn (None of these, More, Start over, This one) when ``place`` is a panel thread."""
        thread = self.threads.get(place.channel, place.thread_ts)
        if thread is None:
            return False, None
        return True, self.turn(client, place, run, thread=thread)

    def turn(
        self,
        client: WebClient,
        place: Place,
        run: Callable[[], TurnResult],
        *,
        thread: AssistantThread,
        set_status: StatusSetter | None = None,
    ) -> TurnResult | None:
        """Status while the turn runs, then one reply (Slack clears the status when the app replies)."""
        if set_status is None:

            def set_status(status: str) -> Any:
                return client.assistant_threads_setStatus(
                    channel_id=place.channel, thread_ts=place.thread_ts or "", status=status
                )

        _quietly(set_status, STATUS)
        result, error = self.conversations.run_turn(place, run)
        if result is None:
            client.chat_postMessage(channel=place.channel, thread_ts=place.thread_ts, text=error)
            return None
        text, blocks = self.conversations.render(result)
        if result.state != "found":
            viewed = thread.viewed_channel
            label = scope_label(result.scope)
            note = ""
            if label == "public images only" and viewed and thread.mode == "channel" and thread.user_id:
                note = self.scope_of(thread, thread.user_id).note
            blocks = blocks + self._scope_blocks(thread, label, note, searched=result.scope)
        client.chat_postMessage(channel=place.channel, thread_ts=place.thread_ts, text=text, blocks=blocks)
        return result

    def _scope_blocks(
        self, thread: AssistantThread, label: str, note: str, *, searched: SearchScope | None = None
    ) -> list[dict[str, Any]]:
        viewed = thread.viewed_channel
        hint = ""
        if thread.mode == "channel":
            stale = searched is not None and viewed and viewed not in (searched.allowed or [])
            if stale and note == "":
                hint = f"You're viewing <#{viewed}> now: say “start over” to search there."
            else:
                hint = "New searches follow the channel you're viewing."
            return scope_blocks(label, note=note, hint=hint, button=(SCOPE_ALL, "Search all my channels"))
        if viewed and viewed.startswith(("C", "G")):
            return scope_blocks(label, note=note, button=(SCOPE_CHANNEL, "Only the channel I'm viewing"))
        return scope_blocks(label, note=note)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _quietly(call: Callable[[str], Any], value: str) -> None:
    """Status and title are courtesies: a workspace without the panel (or a Slack error) costs nothing."""
    try:
        call(value)
    except Exception as error:  # noqa: BLE001
        logger.info("assistant courtesy call failed: %s", error)
