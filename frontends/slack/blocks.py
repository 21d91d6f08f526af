"""Block Kit messages of a turn: the top matches with "This one", the question, "None of these" / "Start over"."""

from __future__ import annotations

from typing import Any

from agent.engine import TurnResult
from chatir.schemas import Hit

THIS_ONE = "chatir_this_one"
NONE_OF_THESE = "chatir_none_of_these"
START_OVER = "chatir_start_over"
MORE = "chatir_more"
HELPFUL = "chatir_helpful"
"""Action id prefix of the "was this helpful?" buttons (``chatir_helpful_yes`` / ``chatir_helpful_no``)."""
SCOPE_ALL = "chatir_scope_all"
SCOPE_CHANNEL = "chatir_scope_channel"
MAX_TITLE = 150


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:MAX_TITLE] or " ", "emoji": False}


def _label(hit: Hit, rank: int) -> str:
    name = hit.text or hit.uri.rsplit("/", 1)[-1]
    return f"{rank}. {name}"


def searching_blocks(text: str = "Searching…") -> list[dict[str, Any]]:
    return [{"type": "context", "elements": [{"type": "mrkdwn", "text": f":mag: {text}"}]}]


def turn_blocks(
    result: TurnResult, slack_file_ids: dict[str, str], *, first_rank: int = 1
) -> list[dict[str, Any]]:
    """The message of a turn. ``slack_file_ids`` maps hit ids to uploaded Slack files (thumbnails);
    ``first_rank``: the rank of ``result.hits[0]`` (a "more" page continues the numbering)."""
    blocks: list[dict[str, Any]] = []
    if result.message:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": result.message}})
    if result.state == "found" and result.chosen is not None:
        return blocks + found_blocks(result.chosen)
    if result.hits:
        heading = f"*Top matches* (round {result.round}):" if first_rank == 1 else "*More matches:*"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": heading}})
    for rank, hit in enumerate(result.hits, start=first_rank):
        file_id = slack_file_ids.get(hit.id)
        if file_id:
            blocks.append(
                {
                    "type": "image",
                    "slack_file": {"id": file_id},
                    "alt_text": _label(hit, rank)[:2000],
                    "title": _plain(_label(hit, rank)),
                }
            )
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{_label(hit, rank)}*  ·  score {hit.score:.3f}"},
                "accessory": {
                    "type": "button",
                    "text": _plain("This one"),
                    "action_id": f"{THIS_ONE}_{rank}",
                    "value": hit.id,
                },
            }
        )
    if result.question:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f":speech_balloon: *{result.question}*\n_Reply in this thread to answer._",
                },
            }
        )
    elif result.state in ("showing", "gave_up") and result.hits:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "Is it one of these? Pick it, or reply with more detail."},
            }
        )
    elements = []
    if result.hits:
        elements.append({"type": "button", "text": _plain("More"), "action_id": MORE, "value": "more"})
        elements.append(
            {"type": "button", "text": _plain("None of these"), "action_id": NONE_OF_THESE, "value": "none"}
        )
    elements.append(
        {"type": "button", "text": _plain("Start over"), "action_id": START_OVER, "value": "restart"}
    )
    blocks.append({"type": "actions", "elements": elements})
    return blocks


def found_blocks(hit: Hit) -> list[dict[str, Any]]:
    where = hit.source or hit.uri
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f":white_check_mark: Found it: *{hit.text or hit.id}*"
                f"\nWhere it lives: `{where}`\nLocation: `{hit.uri}`",
            },
        }
    ]


def helpful_blocks() -> list[dict[str, Any]]:
    """The "was this helpful?" control shown after a pick (it feeds the outcome log: ``chatir stats``)."""
    return [
        {
            "type": "actions",
            "block_id": HELPFUL,
            "elements": [
                {
                    "type": "button",
                    "text": _plain("Yes, this helped"),
                    "action_id": f"{HELPFUL}_yes",
                    "value": "yes",
                },
                {"type": "button", "text": _plain("No"), "action_id": f"{HELPFUL}_no", "value": "no"},
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Was this helpful?"}]},
    ]


def thanked_blocks(blocks: list[dict[str, Any]], helpful: bool) -> list[dict[str, Any]]:
    """The message after a "was this helpful?" answer: the control replaced by a thank-you line."""
    kept = [b for b in blocks if b.get("block_id") != HELPFUL and not _is_helpful_prompt(b)]
    answer = "helpful" if helpful else "not helpful"
    return [
        *kept,
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Thanks: noted as {answer}."}]},
    ]


def _is_helpful_prompt(block: dict[str, Any]) -> bool:
    elements = block.get("elements") or []
    return block.get("type") == "context" and any(e.get("text") == "Was this helpful?" for e in elements)


def scope_blocks(
    label: str, *, note: str = "", hint: str = "", button: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """Which images an assistant-panel search looks at, and how to widen or narrow it.

    ``button``: (action id, label) of the one scope change offered (all my channels / only this channel)."""
    text = f":mag: Searching *{label}*" + ("" if label.startswith("public") else " and public images") + "."
    if note:
        text += f" ({note}.)"
    if hint:
        text += f" {hint}"
    blocks: list[dict[str, Any]] = [{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}]
    if button is not None:
        action_id, title = button
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": _plain(title), "action_id": action_id, "value": action_id}
                ],
            }
        )
    return blocks


def fallback_text(result: TurnResult) -> str:
    """The plain-text version (notifications, screen readers)."""
    if result.state == "found" and result.chosen is not None:
        return f"Found it: {result.chosen.text or result.chosen.id}"
    parts = [result.message or ""]
    if result.hits:
        parts.append(f"{len(result.hits)} matches")
    if result.question:
        parts.append(result.question)
    return " — ".join(p for p in parts if p) or "ChatIR"
