"""The ``search_images`` capability without any framework: arguments, scoping, the call, the summary.

The LangChain tool, the MCP server and the OpenAI function schema are thin adapters over this module,
so all three accept the same arguments, apply the scope the same way and answer with the same text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatir.dialog import MAX_TEXT_CHARS, Dialog, Round
from chatir.errors import ServiceUnavailableError
from chatir.schemas import Hit, SearchRequest
from tools.client import AsyncRetrieverClient, RetrieverClient, RetrieverRequestError
from tools.scope import SearchScope

logger = logging.getLogger(__name__)

TOOL_NAME = "search_images"
TOOL_DESCRIPTION = (
    "Search the team's image collection with the dialog so far: the user's first description (caption) "
    "and every question asked with the user's answer. Returns the best-matching images, best first, as "
    "'rank. id score text'. Call it again after each new answer; the results only cover images this "
    "conversation may see."
)
MAX_K = 20
UNAVAILABLE_MESSAGE = "The image index is unavailable right now; try again later."
_HIT_TEXT_CHARS = 80


class SearchImagesFilter(BaseModel):
    """Optional narrowing chosen by the model. It can only restrict the bound scope, never widen it."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] | None = Field(
        None, max_length=20, description="Only images from these sources (for example a channel or folder)."
    )
    tags: list[str] | None = Field(None, max_length=20, description="Only images carrying one of these tags.")


class SearchImagesArgs(BaseModel):
    """Arguments of ``search_images`` as a model sees them (no scope: that is bound by the caller)."""

    model_config = ConfigDict(extra="forbid")

    caption: str = Field(
        ..., min_length=1, max_length=MAX_TEXT_CHARS, description="The user's first description of the image."
    )
    rounds: list[Round] = Field(
        default_factory=list,
        max_length=50,
        description="The clarifying questions asked so far with the user's answers, oldest first.",
    )
    k: int = Field(5, ge=1, le=MAX_K, description="How many images to return (1-20).")
    filter: SearchImagesFilter | None = Field(
        None,
        description="Optional: only search some sources or tags. Leave empty to search everything visible.",
    )

    def dialog(self) -> Dialog:
        return Dialog(caption=self.caption, rounds=self.rounds)


@dataclass
class SearchOutcome:
    """What every adapter hands back: the text for the model and the hits for the application."""

    text: str
    hits: list[Hit] = field(default_factory=list)
    is_error: bool = False
    model: str | None = None

    def hit_dicts(self) -> list[dict]:
        return [hit.model_dump(mode="json") for hit in self.hits]


def build_request(args: SearchImagesArgs, scope: SearchScope) -> SearchRequest | None:
    """The service request for ``args`` inside ``scope``; ``None`` when the narrowed scope is empty."""
    wanted = args.filter or SearchImagesFilter()
    effective = scope.narrow(sources=wanted.sources or None, tags=wanted.tags or None)
    if effective.is_empty:
        return None
    return SearchRequest(
        dialog=args.dialog(), k=args.k, filter=effective.to_filter(), exclude_ids=effective.exclude_ids
    )


def _one_line(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _HIT_TEXT_CHARS else text[: _HIT_TEXT_CHARS - 1] + "…"


def summarize(hits: list[Hit]) -> str:
    """Short text for the model: one line per hit with rank, id, score and the image's own text."""
    if not hits:
        return "No matching images found."
    lines = [f"Top {len(hits)} images (best first):"]
    for rank, hit in enumerate(hits, start=1):
        line = f"{rank}. id={hit.id} score={hit.score:.3f}"
        if text := _one_line(hit.text or hit.uri.rsplit("/", 1)[-1]):
            line += f' "{text}"'
        if hit.source:
            line += f" source={_one_line(hit.source)}"
        if hit.tags:
            line += " tags=" + ",".join(hit.tags[:5])
        lines.append(line)
    return "\n".join(lines)


EMPTY_SCOPE_MESSAGE = (
    "No images searched: the requested sources or tags are outside what this conversation may see. "
    "Search again without the filter."
)


def error_message(error: Exception) -> str:
    """A plain sentence the model can act on (no traceback, no internals)."""
    if isinstance(error, ServiceUnavailableError):
        return UNAVAILABLE_MESSAGE
    if isinstance(error, RetrieverRequestError):
        if error.status_code in (401, 403):
            return (
                "The image search is not authorised (the service refused its API key); it cannot be used now."
            )
        return f"The image search was rejected: {error.error}. Fix the arguments and try again."
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()[:5]
        )
        return f"Invalid arguments for {TOOL_NAME}: {problems}."
    return f"The image search failed: {error}"


def _outcome(request: SearchRequest | None, response) -> SearchOutcome:
    if request is None:
        return SearchOutcome(text=EMPTY_SCOPE_MESSAGE)
    return SearchOutcome(text=summarize(response.hits), hits=response.hits, model=response.model)


def search(client: RetrieverClient, args: SearchImagesArgs, scope: SearchScope) -> SearchOutcome:
    """Run the search (raises ServiceUnavailableError / RetrieverRequestError on failure)."""
    request = build_request(args, scope)
    return _outcome(request, client.search(request) if request is not None else None)


async def asearch(client: AsyncRetrieverClient, args: SearchImagesArgs, scope: SearchScope) -> SearchOutcome:
    request = build_request(args, scope)
    return _outcome(request, await client.search(request) if request is not None else None)


def failed(error: Exception) -> SearchOutcome:
    """The outcome of a failed call, logged with its full cause."""
    logger.warning("%s failed: %s", TOOL_NAME, error)
    return SearchOutcome(text=error_message(error), is_error=True)


EXPECTED_ERRORS = (ServiceUnavailableError, RetrieverRequestError, ValidationError)
"""Failures turned into a tool message; anything else is a bug and propagates."""
