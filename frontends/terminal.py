"""``chatir chat``: the conversation in the terminal, over the same engine as Slack and the web chat.

Type a description, then answer the questions. Commands: a number picks that match ("This one"),
``none`` rejects the shown matches, ``restart`` starts over, ``quit`` leaves. Where the terminal shows
images inline (iTerm2, WezTerm, kitty's iTerm2 mode), small previews are printed; elsewhere the ids and
paths are listed.
"""

from __future__ import annotations

import base64
import os
import sys
import uuid
from collections.abc import Callable

from agent.engine import ConversationEngine, TurnResult
from chatir.errors import ChatIRError
from retriever_service.schemas import SearchFilter


def supports_inline_images(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm") or "ITERM_SESSION_ID" in env


def inline_image(data: bytes, width_cells: int = 12) -> str:
    """The iTerm2 inline-image escape sequence for ``data``."""
    payload = base64.b64encode(data).decode()
    return f"\033]1337;File=inline=1;width={width_cells};preserveAspectRatio=1:{payload}\a"


def render(result: TurnResult, thumbnail: Callable[[str], bytes] | None = None) -> str:
    lines: list[str] = []
    if result.message:
        lines.append(result.message)
    if result.state == "found" and result.chosen is not None:
        hit = result.chosen
        lines.append(f"Found it: {hit.text or hit.id}\n  {hit.uri}")
        return "\n".join(lines)
    if result.hits:
        lines.append(f"Top matches (round {result.round}):")
        for rank, hit in enumerate(result.hits, start=1):
            preview = ""
            if thumbnail is not None:
                try:
                    preview = inline_image(thumbnail(hit.id)) + " "
                except ChatIRError:
                    preview = ""
            lines.append(f"  {rank}. {preview}{hit.text or hit.id}  [{hit.score:.3f}]  {hit.uri}")
    if result.question:
        lines.append(f"\n? {result.question}")
    elif result.state in ("showing", "gave_up"):
        lines.append("\nIs it one of these? Type its number, 'none', or more detail.")
    elif result.state == "awaiting_description":
        lines.append("Describe the image you are looking for.")
    return "\n".join(lines)


def run_chat(engine: ConversationEngine, scope: SearchFilter | None, *, read: Callable[[str], str] = input,
             write: Callable[[str], None] = print, thumbnail: Callable[[str], bytes] | None = None) -> None:
    """The read-eval-print loop. ``read`` raising EOFError ends it (Ctrl-D)."""
    conversation_id = f"cli:{uuid.uuid4().hex}"
    write("Describe the image you are looking for (quit to leave).")
    last: TurnResult | None = None
    while True:
        try:
            text = read("> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("")
            return
        if text.lower() in ("quit", "exit", ":q"):
            return
        if not text:
            continue
        try:
            if last is not None and text.isdigit() and last.hits and 1 <= int(text) <= len(last.hits):
                last = engine.choose(conversation_id, last.hits[int(text) - 1].id)
            elif last is not None and text.lower() in ("none", "none of these"):
                last = engine.reject_all(conversation_id)
            elif last is not None and text.lower() in ("restart", "start over"):
                last = engine.restart(conversation_id)
            else:
                last = engine.handle(conversation_id, text, scope)
        except ChatIRError as error:
            write(f"! {error}")
            continue
        write(render(last, thumbnail if supports_inline_images() and sys.stdout.isatty() else None))
