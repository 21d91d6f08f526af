"""``search_images`` for OpenAI-style function calling (Chat Completions ``tools=[...]``).

    tools = [search_images_tool_schema()]
    ...
    for call in message.tool_calls:
        outcome = call_search_images(call.function.arguments, client, scope)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.text})

The scope is an argument of the dispatcher, chosen by the application; the model's JSON cannot set it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from langchain_core.utils.function_calling import convert_to_openai_tool

from tools.client import AsyncRetrieverClient, RetrieverClient
from tools.scope import SearchScope
from tools.search import (
    EXPECTED_ERRORS,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    SearchImagesArgs,
    SearchOutcome,
    asearch,
    failed,
    search,
)


@lru_cache(maxsize=1)
def _parameters() -> dict[str, Any]:
    return convert_to_openai_tool(SearchImagesArgs)["function"]["parameters"]


def search_images_tool_schema() -> dict[str, Any]:
    """``{"type": "function", "function": {name, description, parameters}}`` for ``tools=[...]``."""
    return {
        "type": "function",
        "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": _parameters()},
    }


class InvalidArgumentsError(ValueError):
    """The model's arguments are not a JSON object."""


def _parse(arguments: str | dict[str, Any]) -> SearchImagesArgs:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as error:
            raise InvalidArgumentsError(
                f"Invalid arguments for {TOOL_NAME}: not valid JSON ({error.msg})."
            ) from None
    if not isinstance(arguments, dict):
        raise InvalidArgumentsError(f"Invalid arguments for {TOOL_NAME}: expected a JSON object.")
    return SearchImagesArgs.model_validate(arguments)


def call_search_images(
    arguments_json: str | dict[str, Any], client: RetrieverClient, scope: SearchScope
) -> SearchOutcome:
    """Run a model's ``search_images`` call inside ``scope``. Never raises for bad input or a down
    service: the outcome then has ``is_error=True`` and a sentence the model can act on."""
    try:
        return search(client, _parse(arguments_json), scope)
    except InvalidArgumentsError as error:
        return SearchOutcome(text=str(error), is_error=True)
    except EXPECTED_ERRORS as error:
        return failed(error)


async def acall_search_images(
    arguments_json: str | dict[str, Any], client: AsyncRetrieverClient, scope: SearchScope
) -> SearchOutcome:
    """Async :func:`call_search_images`."""
    try:
        return await asearch(client, _parse(arguments_json), scope)
    except InvalidArgumentsError as error:
        return SearchOutcome(text=str(error), is_error=True)
    except EXPECTED_ERRORS as error:
        return failed(error)
