"""What the web chat's JSON API exchanges with the page."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent.engine import TurnResult
from chatir.dialog import MAX_TEXT_CHARS, Dialog
from chatir.schemas import Hit

MAX_BODY_TEXT = 4 * MAX_TEXT_CHARS
"""Longest text accepted at all; the engine gives the precise message for empty or too long text."""


class MessageIn(BaseModel):
    text: str = Field(..., max_length=MAX_BODY_TEXT, description="A description, an answer or a command.")


class MoreIn(BaseModel):
    count: int | None = Field(None, ge=1, le=50, description="How many more (default: CHATIR_TOP_K).")


class ChooseIn(BaseModel):
    image_id: str = Field(..., min_length=1, max_length=200)


class AppInfo(BaseModel):
    title: str
    demo_targets: bool = Field(..., description="True when 'Show me a target' is available.")
    about: str | None = Field(
        None, description="What the searched collection holds, in one or two sentences."
    )
    examples: list[str] = Field(default_factory=list, description="Example descriptions that suit it.")


class ConversationCreated(BaseModel):
    conversation_id: str
    demo_targets: bool


class HitView(BaseModel):
    id: str
    score: float
    thumbnail: str
    image: str
    text: str | None = Field(None, description="What a person recognises: the file name or the message text.")
    source: str | None = Field(None, description="Where it comes from: a folder, a Slack channel, a URL.")
    location: str | None = Field(None, description="The file or URL of the copy the visitor may see.")
    is_target: bool = False


class TurnView(BaseModel):
    conversation_id: str
    state: str
    action: str
    round: int
    question: str | None
    message: str | None
    hits: list[HitView]
    dialog: Dialog | None
    chosen: HitView | None = None
    excluded_count: int = 0
    page_start: int = Field(0, description="Index in ``hits`` of the first match new in this turn ('more').")
    target_id: str | None = None
    target_rank: int | None = Field(
        None, description="Rank of the demo target (1 = best), None when > rank_limit."
    )
    rank_limit: int = 100
    found_target: bool = False

    @classmethod
    def of(
        cls,
        result: TurnResult,
        *,
        conversation_id: str,
        target_id: str | None = None,
        target_rank: int | None = None,
        rank_limit: int = 100,
    ) -> TurnView:
        def view(hit: Hit) -> HitView:
            return HitView(
                id=hit.id,
                score=hit.score,
                thumbnail=f"/api/images/{hit.id}/thumbnail",
                image=f"/api/images/{hit.id}",
                text=hit.text,
                source=hit.source,
                location=hit.uri if not hit.uri.startswith("/v1/") else None,
                is_target=hit.id == target_id,
            )

        chosen = view(result.chosen) if result.chosen else None
        return cls(
            conversation_id=conversation_id,
            state=result.state,
            action=result.action,
            round=result.round,
            question=result.question,
            message=result.message,
            hits=[view(h) for h in result.hits],
            dialog=result.dialog,
            chosen=chosen,
            excluded_count=result.excluded_count,
            page_start=result.page_start,
            target_id=target_id,
            target_rank=target_rank,
            rank_limit=rank_limit,
            found_target=bool(chosen and target_id and chosen.id == target_id),
        )


class TargetView(BaseModel):
    id: str
    thumbnail: str
    image: str
    rank: int | None = Field(None, description="Rank in the current search, when one is under way.")
    rank_limit: int = 100
