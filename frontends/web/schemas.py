"""What the web chat's JSON API exchanges with the page."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent.engine import TurnResult
from chatir.dialog import MAX_TEXT_CHARS, Dialog


class MessageIn(BaseModel):
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)


class ChooseIn(BaseModel):
    image_id: str = Field(..., min_length=1, max_length=200)


class HitView(BaseModel):
    id: str
    score: float
    thumbnail: str
    image: str
    text: str | None = None
    source: str | None = None
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
    target_id: str | None = None
    target_rank: int | None = Field(None, description="Rank of the demo target (1 = best), None when > rank_limit.")
    rank_limit: int = 100
    found_target: bool = False

    @classmethod
    def of(cls, result: TurnResult, *, target_id: str | None = None, target_rank: int | None = None,
           rank_limit: int = 100) -> "TurnView":
        def view(hit) -> HitView:
            return HitView(id=hit.id, score=hit.score, thumbnail=f"/api/images/{hit.id}/thumbnail",
                           image=f"/api/images/{hit.id}", text=hit.text, source=hit.source,
                           is_target=hit.id == target_id)

        chosen = view(result.chosen) if result.chosen else None
        return cls(
            conversation_id=result.conversation_id, state=result.state, action=result.action, round=result.round,
            question=result.question, message=result.message, hits=[view(h) for h in result.hits],
            dialog=result.dialog, chosen=chosen, target_id=target_id, target_rank=target_rank,
            rank_limit=rank_limit, found_target=bool(chosen and target_id and chosen.id == target_id),
        )


class TargetView(BaseModel):
    id: str
    thumbnail: str
    image: str
