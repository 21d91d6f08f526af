"""Suggested prompts for a new assistant thread: example descriptions suited to what the index holds.

First the captions (``CHATIR_CAPTIONER``) of a few images the person may see -- searched within their scope,
so a prompt never describes an image they could not find -- then examples for the kind of images the
question bank is made for (the procedural world's shapes, or everyday photos and screenshots).
"""

from __future__ import annotations

import logging

from agent.search import Searcher
from chatir.dialog import Dialog
from chatir.scope import SearchScope

logger = logging.getLogger(__name__)

MAX_PROMPTS = 4
"""Slack shows at most four suggested prompts."""
MAX_PROMPT_CHARS = 80
EXAMPLES = {
    "world": (
        "a red star on a blue background",
        "two small green circles",
        "a big yellow triangle next to a square",
        "three shapes on a black background",
    ),
    "generic": (
        "a screenshot of a dashboard with a line chart",
        "a group photo outdoors in the daytime",
        "a dog on a beach",
        "a whiteboard with a diagram",
    ),
}


def suggested_prompts(
    searcher: Searcher | None, scope: SearchScope, *, bank: str, sample: int = 25
) -> list[dict[str, str]]:
    """Up to four ``{"title", "message"}`` prompts; the searcher failing only costs the index-based ones."""
    captions: list[str] = []
    if searcher is not None:
        try:
            hits = searcher.search(Dialog(caption="a picture"), k=sample, scope=scope)
        except Exception as error:  # noqa: BLE001 - prompts are a courtesy; the thread works without them
            logger.warning("no index-based prompts: %s", error)
            hits = []
        for hit in hits:
            caption = " ".join((hit.caption or "").split())
            if 3 <= len(caption) <= MAX_PROMPT_CHARS and caption.lower() not in {c.lower() for c in captions}:
                captions.append(caption)
            if len(captions) == 2:
                break
    examples = EXAMPLES.get(bank, EXAMPLES["generic"])
    chosen = [*captions, *(e for e in examples if e not in captions)][:MAX_PROMPTS]
    return [{"title": text[:1].upper() + text[1:], "message": text} for text in chosen]
