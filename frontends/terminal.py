"""``chatir chat``: the conversation in the terminal, over the same engine as Slack and the web chat.

Type a description, then answer the questions. Commands: ``#3`` picks that match ("This one"), ``more``
shows the next matches, ``none`` rejects the shown matches, ``restart`` starts over, ``help`` lists the
commands, ``quit`` leaves
(so does Ctrl-D). Where the terminal shows images inline (iTerm2, WezTerm), small previews are printed;
elsewhere the ids and paths of the matches are listed.
"""

from __future__ import annotations

import base64
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence

from agent.engine import ConversationEngine, TurnResult
from chatir.errors import ChatIRError
from tools.scope import SearchScope

HELP = (
    "Describe the image you are looking for, then answer my questions.\n"
    '  #3         pick match 3 (also "pick 3", "the third one"); a bare 3 is an answer\n'
    "  more       the next matches\n"
    "  none       none of these: show other matches\n"
    "  restart    start over with a new description\n"
    "  quit       leave (or Ctrl-D)"
)
QUIT = frozenset({"quit", "exit", ":q", "q"})
REJECT = frozenset({"none", "none of these", "n"})
RESTART = frozenset({"restart", "start over"})


def supports_inline_images(environ: Mapping[str, str] | None = None) -> bool:
    """True in terminals that show the iTerm2 inline-image protocol (iTerm2, WezTerm)."""
    env = os.environ if environ is None else environ
    return env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm") or "ITERM_SESSION_ID" in env


def inline_image(data: bytes, width_cells: int = 12) -> str:
    """The iTerm2 inline-image escape sequence for ``data``."""
    payload = base64.b64encode(data).decode()
    return f"\033]1337;File=inline=1;width={width_cells};preserveAspectRatio=1:{payload}\a"


def render(result: TurnResult, thumbnail: Callable[[str], bytes] | None = None) -> str:
    """A turn as terminal text: note, numbered matches (id, score, path), then the question."""
    lines: list[str] = []
    if result.message:
        lines.append(result.message)
    if result.state == "found" and result.chosen is not None:
        hit = result.chosen
        lines.append(f"Found it: {hit.text or hit.id}  (id {hit.id})\n  {hit.uri}")
        lines.append("Describe another image to search again, or quit.")
        return "\n".join(lines)
    if result.hits:
        when = (
            "your description"
            if result.round == 0
            else f"{result.round} answer{'s' if result.round > 1 else ''}"
        )
        lines.append("More matches:" if result.page_start else f"Top matches after {when}:")
        for rank, hit in enumerate(result.hits[result.page_start :], start=result.page_start + 1):
            preview = ""
            if thumbnail is not None:
                try:
                    preview = inline_image(thumbnail(hit.id)) + " "
                except ChatIRError:
                    preview = ""
            lines.append(
                f"  {rank}. {preview}{hit.text or hit.id}  [{hit.score:.3f}]  id {hit.id}  {hit.uri}"
            )
    if result.question:
        lines.append(f"? {result.question}")
    elif result.state in ("showing", "gave_up"):
        lines.append("Is it one of these? Type #number, 'more', 'none', or tell me more.")
    elif result.state == "awaiting_description":
        lines.append("Describe the image you are looking for.")
    return "\n".join(lines)


def run_chat(
    engine: ConversationEngine,
    scope: SearchScope | None,
    *,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
    thumbnail: Callable[[str], bytes] | None = None,
    inline_images: bool | None = None,
    conversation_id: str | None = None,
    about: str | None = None,
    examples: Sequence[str] = (),
) -> TurnResult | None:
    """The read-eval-print loop; returns the last turn. ``read`` raising EOFError ends it (Ctrl-D).

    ``scope`` bounds the searches (None: public images only). Previews need ``thumbnail`` and a terminal
    that shows inline images (``inline_images=None``: detected).
    """
    conversation_id = conversation_id or f"cli:{uuid.uuid4().hex}"
    if inline_images is None:
        inline_images = supports_inline_images() and sys.stdout.isatty()
    previews = thumbnail if inline_images else None
    if about:
        write(about)
    if examples:
        write("For example: " + "; ".join(f'"{e}"' for e in examples))
    write("Describe the image you are looking for ('help' for commands, 'quit' to leave).")
    last: TurnResult | None = None
    while True:
        try:
            text = read("> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("")
            return last
        command = text.lower()
        if command in QUIT:
            return last
        if not text:
            continue
        if command in ("help", "?"):
            write(HELP)
            continue
        try:
            # picks ("#3", "the third one") go through the engine's one intent rule, like every front-end's:
            # a bare number answers the pending question ("how many shapes are there?" "3")
            if last is not None and command in REJECT:
                last = engine.reject_all(conversation_id)
            elif last is not None and command in RESTART:
                last = engine.restart(conversation_id)
            else:
                last = engine.handle(conversation_id, text, scope)
        except ChatIRError as error:
            write(f"! {error}")
            continue
        write(render(last, previews))
