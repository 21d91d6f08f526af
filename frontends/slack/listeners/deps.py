"""What the listeners need, bundled so each listener module stays small."""

from __future__ import annotations

from dataclasses import dataclass

from frontends.slack.assistant import SlackAssistant
from frontends.slack.conversation import SlackConversations
from frontends.slack.indexing import SlackIndexer


@dataclass
class SlackDeps:
    conversations: SlackConversations
    indexer: SlackIndexer
    index_shared_files: bool = True
    assistant: SlackAssistant | None = None


def just_ack(ack) -> None:
    ack()
