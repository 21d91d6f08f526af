"""Who may see what: the visibility scope of a Slack search, from Slack's own membership data.

Images indexed from a channel are visible to that channel's members (their ``allowed`` list holds the
channel id); a folder indexed by an admin is tagged with the channels it is shared to, or ``public``.

Results are posted where the search happens, so the scope depends on the place as well as the person:

* in a channel (or a thread in it) everybody who reads the thread is a member of that channel, so the
  search sees that channel's images and public ones -- never another channel's, whoever asks;
* in a direct message with the bot, the search sees every channel the asking user is a member of.

* in the assistant side panel (a thread of the user's DM with the bot), the search sees the channel the
  user is viewing -- only when they are a member of it -- or, when they ask for it, every channel they are
  in (:func:`assistant_scope`).

Membership comes from ``users.conversations`` and is cached for a short TTL (a bounded cache). Nothing the user types
is ever consulted: the scope is computed from the event's user and channel ids only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from cachetools import TTLCache
from slack_sdk import WebClient

from chatir.schemas import PUBLIC

_CHANNEL_TYPES = "public_channel,private_channel,mpim"


class MembershipCache:
    """The channels each user belongs to, fetched from Slack and kept for ``ttl_s`` seconds (at most
    ``max_users`` users: the least recently fetched go first)."""

    def __init__(self, client: WebClient, ttl_s: float = 60.0, *, max_users: int = 10_000) -> None:
        self._client = client
        self._entries: TTLCache[str, frozenset[str]] = TTLCache(maxsize=max_users, ttl=ttl_s)
        self._lock = threading.Lock()

    def channels_of(self, user_id: str) -> frozenset[str]:
        with self._lock:
            cached = self._entries.get(user_id)
        if cached is not None:
            return cached
        channels: set[str] = set()
        cursor = None
        while True:
            response = self._client.users_conversations(
                user=user_id, types=_CHANNEL_TYPES, exclude_archived=True, limit=200, cursor=cursor
            )
            channels.update(c["id"] for c in response.get("channels", []))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        result = frozenset(channels)
        with self._lock:
            self._entries[user_id] = result
        return result

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)

    def invalidate(self, user_id: str | None = None) -> None:
        with self._lock:
            if user_id is None:
                self._entries.clear()
            else:
                self._entries.pop(user_id, None)


def scope_for(
    membership: MembershipCache, *, user_id: str, channel_id: str, is_direct_message: bool
) -> list[str]:
    """The visibility groups a search started by ``user_id`` in ``channel_id`` may return."""
    if is_direct_message:
        return sorted(membership.channels_of(user_id) | {PUBLIC})
    return sorted({channel_id, PUBLIC})


ScopeMode = Literal["channel", "all"]
"""An assistant thread searches the channel the person is viewing (``channel``) or all their channels."""


@dataclass(frozen=True)
class AssistantScope:
    """The groups an assistant-panel search may return, and how to say it to the person."""

    groups: list[str]
    label: str
    note: str = ""


def assistant_scope(
    membership: MembershipCache, *, user_id: str, viewed_channel: str | None, mode: ScopeMode
) -> AssistantScope:
    """The scope of a search in ``user_id``'s assistant panel (answers go to their own DM with the bot).

    ``channel`` mode: the channel being viewed (Slack's thread context) *intersected with the channels the
    person is a member of*, plus public images -- a context naming a channel they are not in searches public
    images only, never that channel. ``all`` mode (or no channel in view): every channel they are in, as in a
    direct message. The thread context comes from Slack's events, never from what the person typed."""
    mine = membership.channels_of(user_id)
    if mode == "all" or not viewed_channel or not viewed_channel.startswith(("C", "G")):
        return AssistantScope(sorted(mine | {PUBLIC}), "all your channels")
    if viewed_channel in mine:
        return AssistantScope(sorted({viewed_channel, PUBLIC}), f"<#{viewed_channel}>")
    return AssistantScope(
        [PUBLIC],
        "public images only",
        f"you are not a member of <#{viewed_channel}>, so its images are not searched",
    )
