"""The LangChain tool ``search_images``: a thin schema over the retriever client.

The scope is bound by the application, never by the model::

    tool = SearchImagesTool(client=RetrieverClient(url), scope=SearchScope(allowed=["C123", "public"]))

or passed per run through LangGraph's runtime context (``agent.invoke(..., context=ctx)`` where ``ctx``
is a :class:`~tools.scope.SearchScope`, has a ``search_scope`` attribute, or is a dict with a
``"search_scope"`` key). When both are given the tool searches their intersection; with neither it
refuses to search. Results: a short text for the model and the hits (list of dicts, the service's
``Hit`` fields) as the ToolMessage artifact.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool, InjectedToolArg, ToolException
from langchain_core.tools.base import ArgsSchema
from pydantic import ValidationError, model_validator

from chatir.dialog import Round
from chatir.settings import Settings, get_settings
from tools.client import AsyncRetrieverClient, RetrieverClient
from tools.scope import SearchScope, scope_from_context
from tools.search import (
    EXPECTED_ERRORS,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    SearchImagesArgs,
    SearchImagesFilter,
    asearch,
    error_message,
    failed,
    search,
)

NO_SCOPE_MESSAGE = (
    "The image search is not configured for this conversation (no search scope is bound); it cannot be used."
)


class SearchImagesInput(SearchImagesArgs):
    """:class:`SearchImagesArgs` plus the LangGraph runtime, injected by ``ToolNode`` and hidden from the model."""

    runtime: Annotated[Any, InjectedToolArg] = None


def _validation_message(error: ValidationError) -> str:
    return error_message(error)


def _runtime_scope(runtime: object) -> SearchScope | None:
    """The scope in a real LangGraph ``ToolRuntime``'s context. Anything else (e.g. a dict a model
    smuggled into the arguments) is ignored, so a model cannot forge a runtime scope."""
    if runtime is None:
        return None
    try:
        from langgraph.prebuilt import ToolRuntime
    except ImportError:  # the tool alone ([tools]) runs without LangGraph; then nothing is a ToolRuntime
        return None
    if not isinstance(runtime, ToolRuntime):
        return None
    return scope_from_context(runtime.context)


class SearchImagesTool(BaseTool):
    """Searches the image index with the dialog so far, inside a scope bound by the application."""

    name: str = TOOL_NAME
    description: str = TOOL_DESCRIPTION
    args_schema: ArgsSchema | None = SearchImagesInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Any = True
    handle_validation_error: bool | str | Any = _validation_message

    client: RetrieverClient | None = None
    """Blocking client (built from ``Settings`` when neither client is given)."""
    async_client: AsyncRetrieverClient | None = None
    """Async client (defaults to one configured like ``client``)."""
    scope: SearchScope | None = None
    """Images this tool may return. ``None``: take the scope from the runtime context (refuse without)."""

    @model_validator(mode="after")
    def _fill_clients(self) -> SearchImagesTool:
        if self.client is None and self.async_client is None:
            self.client = RetrieverClient.from_settings(get_settings())
        if self.async_client is None:
            assert self.client is not None
            self.async_client = AsyncRetrieverClient.like(self.client)
        if self.client is None:
            self.client = RetrieverClient.like(self.async_client)
        return self

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, scope: SearchScope | None, **kwargs: Any):
        """The tool for ``settings.service_url`` (``CHATIR_API_KEY`` as bearer token)."""
        settings = settings or get_settings()
        client = RetrieverClient.from_settings(settings)
        return cls(client=client, async_client=AsyncRetrieverClient.like(client), scope=scope, **kwargs)

    def effective_scope(self, runtime: object = None) -> SearchScope:
        """The bound scope intersected with the runtime context's scope; ToolException when neither exists."""
        context_scope = _runtime_scope(runtime)
        if self.scope is None:
            if context_scope is None:
                raise ToolException(NO_SCOPE_MESSAGE)
            return context_scope
        return self.scope if context_scope is None else self.scope.intersect(context_scope)

    @staticmethod
    def _args(caption: str, rounds: list[Round] | None, k: int, filter: Any) -> SearchImagesArgs:
        return SearchImagesArgs(caption=caption, rounds=rounds or [], k=k, filter=filter)

    def _run(
        self,
        caption: str,
        rounds: list[Round] | None = None,
        k: int = 5,
        filter: SearchImagesFilter | None = None,
        runtime: Any = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, list[dict]]:
        scope = self.effective_scope(runtime)
        assert self.client is not None  # set by _fill_clients
        try:
            outcome = search(self.client, self._args(caption, rounds, k, filter), scope)
        except EXPECTED_ERRORS as error:
            raise ToolException(failed(error).text) from error
        return outcome.text, outcome.hit_dicts()

    async def _arun(
        self,
        caption: str,
        rounds: list[Round] | None = None,
        k: int = 5,
        filter: SearchImagesFilter | None = None,
        runtime: Any = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, list[dict]]:
        scope = self.effective_scope(runtime)
        assert self.async_client is not None  # set by _fill_clients
        try:
            outcome = await asearch(self.async_client, self._args(caption, rounds, k, filter), scope)
        except EXPECTED_ERRORS as error:
            raise ToolException(failed(error).text) from error
        return outcome.text, outcome.hit_dicts()
