"""The LLM questioner: a LangChain agent (``create_agent``) with the ``search_images`` tool.

The chat model is langchain-openai's ``ChatOpenAI``: OpenAI by default, or any OpenAI-compatible server
(Ollama, vLLM, llama.cpp) through ``CHATIR_LLM_BASE_URL`` + ``CHATIR_LLM_MODEL`` (+ ``CHATIR_LLM_API_KEY``).
Each turn the agent gets the full dialog, the current top candidates and the questions already asked; it may
search (with the tool bound to the conversation's scope by the engine, never by the model) and its final
message is the question. A repeated or empty question is retried once; if the model still fails (or the LLM
is down) the fallback questioner (the LLM-free one) asks instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agent.questioners.base import Questioner, is_repeat
from agent.questioners.prompts import RETRY_PROMPT, SYSTEM_PROMPT, extract_question, render_request
from chatir.dialog import Dialog
from chatir.errors import ChatIRError
from chatir.schemas import Hit
from tools.scope import SearchScope

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import BaseTool

    from chatir.settings import Settings

logger = logging.getLogger(__name__)

ToolFactory = Callable[[SearchScope], "BaseTool"]
"""Builds the search tool bound to one conversation's scope."""

MAX_TOOL_CALLS = 3


def build_chat_model(settings: Settings, **overrides: Any) -> BaseChatModel:
    """``ChatOpenAI`` for ``settings.llm_model`` at ``settings.llm_base_url`` (OpenAI when unset)."""
    from langchain_openai import ChatOpenAI

    if not settings.llm_model:
        raise ChatIRError(
            "no LLM is configured: set CHATIR_LLM_MODEL (and CHATIR_LLM_BASE_URL for a local server)"
        )
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    if key is None and settings.llm_base_url:
        key = "not-needed"  # local OpenAI-compatible servers accept any key; the client insists on one
    if key is None:
        raise ChatIRError(
            f"the LLM {settings.llm_model!r} needs an API key: set CHATIR_LLM_API_KEY (or OPENAI_API_KEY), "
            "or point CHATIR_LLM_BASE_URL at a local OpenAI-compatible server"
        )
    options: dict[str, Any] = {
        "model": settings.llm_model,
        "api_key": key,
        "base_url": settings.llm_base_url,
        "temperature": 0.2,
        "timeout": 60.0,
        "max_retries": 2,
    }
    options.update(overrides)
    return ChatOpenAI(**options)


def service_tool_factory(settings: Settings) -> ToolFactory:
    """Tool factory over the retriever service (``tools.search_tool``), scope bound at construction."""

    from tools.client import AsyncRetrieverClient, RetrieverClient

    client = RetrieverClient.from_settings(settings)
    async_client = AsyncRetrieverClient.like(client)

    def factory(scope: SearchScope) -> BaseTool:
        from tools.search_tool import SearchImagesTool

        return SearchImagesTool(client=client, async_client=async_client, scope=scope)

    return factory


class LLMQuestioner:
    """ChatIR's questioner G as a tool-using LangChain agent, grounded in the top candidates (PlugIR)."""

    name = "llm"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        tool_factory: ToolFactory | None = None,
        fallback: Questioner | None = None,
        candidates_shown: int = 5,
        max_tool_calls: int = MAX_TOOL_CALLS,
        _tool: BaseTool | None = None,
    ) -> None:
        self.model = model
        self.tool_factory = tool_factory
        self.fallback = fallback
        self.candidates_shown = candidates_shown
        self.candidates_needed = max(candidates_shown, getattr(fallback, "candidates_needed", 0))
        self.max_tool_calls = max_tool_calls
        self._tool = _tool

    @classmethod
    def from_settings(
        cls, settings: Settings, *, fallback: Questioner | None = None, **options: Any
    ) -> LLMQuestioner:
        return cls(
            build_chat_model(settings),
            tool_factory=service_tool_factory(settings),
            fallback=fallback,
            **options,
        )

    @property
    def needs_vectors(self) -> bool:
        return bool(getattr(self.fallback, "needs_vectors", False))

    def sync_model(self) -> None:
        sync = getattr(self.fallback, "sync_model", None)
        if callable(sync):
            sync()

    # --- ScopeAware --------------------------------------------------------------------------------
    def with_scope(self, scope: SearchScope) -> LLMQuestioner:
        """A copy whose search tool is bound to ``scope`` (what the front-end stored, never user text)."""
        tool = self.tool_factory(scope) if self.tool_factory else None
        return LLMQuestioner(
            self.model,
            tool_factory=self.tool_factory,
            fallback=self.fallback,
            candidates_shown=self.candidates_shown,
            max_tool_calls=self.max_tool_calls,
            _tool=tool,
        )

    # --- Questioner --------------------------------------------------------------------------------
    def _agent(self) -> Any:
        from langchain.agents import create_agent

        return create_agent(self.model, tools=[self._tool] if self._tool else [], system_prompt=SYSTEM_PROMPT)

    def _ask(self, agent: Any, messages: list[BaseMessage]) -> tuple[str | None, list[BaseMessage]]:
        state = agent.invoke({"messages": messages}, config={"recursion_limit": 2 * self.max_tool_calls + 2})
        history: list[BaseMessage] = state["messages"]
        final = next((m for m in reversed(history) if isinstance(m, AIMessage)), None)
        if final is None or final.tool_calls:
            return None, history
        return extract_question(final.text), history

    def _reading(self, dialog: Dialog, candidates: list[Hit]):
        """The fallback questioner's reading of the candidates (settled answers, likely absent things), if any."""
        reading = getattr(self.fallback, "reading", None)
        if not callable(reading):
            return None
        try:
            return reading(dialog, candidates)
        except Exception as error:  # noqa: BLE001 - the reading is a hint; the question matters more
            logger.info("no candidate reading for the LLM prompt (%s: %s)", type(error).__name__, error)
            return None

    def next_question(self, dialog: Dialog, candidates: list[Hit], asked: list[str]) -> str | None:
        try:
            agent = self._agent()
            messages: list[BaseMessage] = [
                HumanMessage(
                    render_request(
                        dialog, candidates[: self.candidates_shown], asked, self._reading(dialog, candidates)
                    )
                )
            ]
            question, history = self._ask(agent, messages)
            if question is None or is_repeat(question, asked):
                logger.info(
                    "LLM questioner repeated itself or gave no question (%r); retrying once", question
                )
                retry = [*history]
                if not isinstance(retry[-1], AIMessage) or retry[-1].tool_calls:
                    retry.append(AIMessage(question or ""))
                question, _ = self._ask(agent, [*retry, HumanMessage(RETRY_PROMPT)])
            if question is not None and not is_repeat(question, asked):
                return question
            logger.warning("LLM questioner failed to ask a new question; using the fallback questioner")
        except Exception as error:  # noqa: BLE001 - the LLM is down, times out, or breaks the protocol
            logger.warning(
                "LLM questioner failed (%s: %s); using the fallback questioner", type(error).__name__, error
            )
        if self.fallback is None:
            return None
        return self.fallback.next_question(dialog, candidates, asked)
