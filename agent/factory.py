"""Assemble an engine from settings: what front-ends call (``build_engine(get_settings())``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from agent.engine import ConversationEngine
from agent.outcomes import OutcomeLog
from agent.questioners.answer_model import load_answer_model
from agent.questioners.bank import QuestionBank, load_bank
from agent.questioners.base import Questioner
from agent.questioners.baselines import NoQuestioner, RandomQuestioner
from agent.questioners.caption_reader import load_caption_reader
from agent.questioners.info_gain import InfoGainQuestioner
from agent.questioners.scoring import ModelCandidateScorer, TextEncoder, VectorLookup
from agent.rerank import AnswerReranker
from agent.search import Searcher, ServiceSearcher, ServiceTextEncoder
from agent.state import StateStore
from agent.state_backends import open_outcome_database, open_state_store
from agent.vector_cache import VectorCache
from chatir.settings import Settings

if TYPE_CHECKING:
    from agent.questioners.llm import ToolFactory

logger = logging.getLogger(__name__)

QuestionerKind = Literal["auto", "llm", "info_gain", "random", "none"]


def build_questioner(
    settings: Settings,
    kind: QuestionerKind | None = None,
    *,
    text_encoder: TextEncoder | None = None,
    lookup: VectorLookup | None = None,
    bank: QuestionBank | str | None = None,
    tool_factory: ToolFactory | None = None,
) -> Questioner:
    """The questioner named by ``kind`` (default ``settings.questioner``).

    ``auto`` is the LLM agent when ``CHATIR_LLM_MODEL`` is set, else the LLM-free information-gain
    questioner. The information-gain questioner embeds answer texts with ``text_encoder`` (default: the
    retriever service's own model, over HTTP) and gets candidate image embeddings from ``lookup`` or,
    without one, with the hits (``with_vectors``). The LLM agent falls back to it.
    """
    kind = kind or settings.questioner
    if kind == "auto":
        kind = "llm" if settings.llm_model else "info_gain"
    if isinstance(bank, str) or bank is None:
        bank = load_bank(bank or settings.question_bank)
    if kind == "none":
        return NoQuestioner()
    if kind == "random":
        return RandomQuestioner(bank)
    if text_encoder is None:
        from tools.client import RetrieverClient

        text_encoder = ServiceTextEncoder(RetrieverClient.from_settings(settings))
    scorer = build_scorer(settings, text_encoder, lookup, bank)
    info_gain = InfoGainQuestioner(
        scorer,
        bank,
        top_n=settings.info_gain_top_n,
        settled_threshold=settings.info_gain_settled_threshold,
        absent_threshold=settings.info_gain_absent_threshold,
        answer_weight=settings.info_gain_answer_weight,
    )
    if kind == "info_gain":
        return info_gain
    from agent.questioners.llm import LLMQuestioner, build_chat_model, service_tool_factory

    return LLMQuestioner(
        build_chat_model(settings),
        tool_factory=tool_factory or service_tool_factory(settings),
        fallback=info_gain,
    )


def build_scorer(
    settings: Settings, text_encoder: TextEncoder, lookup: VectorLookup | None, bank: QuestionBank
) -> ModelCandidateScorer:
    """How the questioner and the re-ranker read answers from pictures: the bank's answer model
    (``CHATIR_ANSWER_MODEL``) where it applies, the text side at ``CHATIR_INFO_GAIN_TEMPERATURE`` elsewhere;
    and what a description implies (``CHATIR_CAPTION_READER``)."""
    return ModelCandidateScorer(
        text_encoder,
        lookup,
        temperature=settings.info_gain_temperature,
        answer_model=load_answer_model(settings.answer_model, bank.name),
        caption_reader=load_caption_reader(settings.caption_reader, bank.name),
    )


def build_engine(
    settings: Settings,
    *,
    searcher: Searcher | None = None,
    questioner: Questioner | None = None,
    store: StateStore | None = None,
) -> ConversationEngine:
    """The product engine: searches the retriever service, state where ``CHATIR_STATE_URL`` says (default:
    SQLite in ``settings.state_db``)."""
    if searcher is None:
        from tools.client import RetrieverClient

        searcher = ServiceSearcher(
            RetrieverClient.from_settings(settings), vector_cache=build_vector_cache(settings)
        )
    questioner = questioner or build_questioner(settings)
    return ConversationEngine(
        searcher,
        questioner,
        store or open_state_store(settings),
        settings,
        reranker=build_reranker(settings, questioner),
        outcomes=build_outcome_log(settings),
    )


def build_vector_cache(settings: Settings) -> VectorCache | None:
    """The re-ranker's cache of image embeddings (``CHATIR_RERANK_VECTOR_CACHE``; None when 0 or not re-ranking)."""
    if settings.rerank_vector_cache <= 0 or settings.rerank_pool <= 0:
        return None
    return VectorCache(settings.rerank_vector_cache)


def build_outcome_log(settings: Settings) -> OutcomeLog | None:
    """The outcome log (None when ``CHATIR_OUTCOME_RETENTION_DAYS`` is 0): under ``CHATIR_HOME``, or in the
    PostgreSQL database ``CHATIR_STATE_URL`` names (shared by the replicas)."""
    if settings.outcome_retention_days <= 0:
        return None
    return OutcomeLog(open_outcome_database(settings), retention_days=settings.outcome_retention_days)


def build_reranker(settings: Settings, questioner: Questioner | None) -> AnswerReranker | None:
    """The answer re-ranker over the information-gain questioner's scorer and bank (None when off or when
    no such questioner is there to lend them)."""
    info_gain = (
        questioner if isinstance(questioner, InfoGainQuestioner) else getattr(questioner, "fallback", None)
    )
    if not isinstance(info_gain, InfoGainQuestioner) or not isinstance(
        info_gain.scorer, ModelCandidateScorer
    ):
        return None
    return AnswerReranker.from_settings(
        settings, info_gain.scorer, info_gain.bank, dialog_temperature=info_gain.prior_temperature
    )
