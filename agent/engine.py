"""The conversation engine: one engine drives Slack, the web chat, the terminal chat and the evaluation harness.

Each turn takes the user's message (the first description or an answer), updates the dialog
D_i = (C, Q1, A1, ..., Qi, Ai), searches within the conversation's scope, asks the questioner for the next
question and returns a :class:`TurnResult`. Front-ends call :meth:`ConversationEngine.handle` with every
chat message (it recognises "start over", "none of these", "it's the third one", corrections and
"I don't know"), and :meth:`choose` / :meth:`reject_all` / :meth:`restart` from buttons.

Rules the engine keeps:

- **Scope** is given by the front-end when a conversation starts and stored with it; nothing the user types
  changes it, and the LLM questioner's search tool is bound to it by the engine.
- **Turns are atomic**: the new state is saved only after the search (and the question) succeeded, so a
  failing retriever (``ServiceUnavailableError``) or bad input (``InvalidMessageError``) loses nothing -- the
  user sends the message again.
- **"I don't know"** is kept as an ordinary answer (ChatIR's dialogs contain such answers too).
- **Corrections** ("actually it's blue") are appended as a round of their own with no question; the dialog
  encoder reads the whole dialog in order, so the later statement is what the search sees last and it
  overrides the earlier one (earlier rounds are never edited: the conversation stays an honest record). The
  pending question was not answered, so it is asked again.
- **Off-topic text** is an answer like any other: it cannot break anything, and it cannot change the scope.
- **No question is asked twice** in one search: the engine refuses a repeat even if a questioner offers one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import zlib
from typing import Literal

from pydantic import BaseModel, Field

from agent.intents import classify
from agent.outcomes import OutcomeLog
from agent.questioners.base import Questioner, ScopeAware, is_repeat
from agent.rerank import AnswerReranker
from agent.search import PoolSearcher, Searcher, as_scope
from agent.state import MAX_ARCHIVED, RECOVERED_NOTE, ConversationState, StateStore, Status
from agent.state_backends import open_state_store
from agent.vectors import pack, without_vectors
from chatir.dialog import MAX_TEXT_CHARS, Dialog, Round, is_blank
from chatir.errors import ChatIRError
from chatir.schemas import Hit, SearchFilter
from chatir.settings import Settings, get_settings
from tools.scope import SearchScope

logger = logging.getLogger(__name__)

MAX_DIALOG_ROUNDS = 50
"""Hard limit of :class:`chatir.dialog.Dialog` (questions, answers and corrections together)."""
MAX_SEEN = 200
MAX_ID_CHARS = 300

ScopeLike = SearchScope | SearchFilter | None
"""What front-ends may pass as a scope (see :func:`as_scope`)."""

Action = Literal[
    "started", "answered", "corrected", "rejected", "chosen", "restarted", "shown", "more"
]  # fmt: skip
MAX_SHOWN = 100
"""Most matches one search shows ("more" pages through them; the service's largest k)."""


class InvalidMessageError(ChatIRError):
    """The message cannot be used (empty, too long, no such match); the conversation is unchanged."""


class ConversationNotFoundError(ChatIRError):
    """No conversation has this id (it never started, or it was deleted)."""


class TurnResult(BaseModel):
    """What a front-end shows after a turn."""

    conversation_id: str
    state: Status = Field(..., description="awaiting_description, asking, showing, found or gave_up")
    action: Action = Field(..., description="What this turn did.")
    round: int = Field(..., description="Rounds in the dialog so far (answers and corrections).")
    question: str | None = Field(None, description="The question to ask now; None when not asking.")
    hits: list[Hit] = Field(default_factory=list, description="The current top matches, best first.")
    dialog: Dialog | None = None
    chosen: Hit | None = Field(None, description="The image the user picked (state 'found').")
    message: str | None = Field(None, description="A short note for the user about this turn.")
    excluded_count: int = Field(0, description="Images excluded with 'None of these' in this search.")
    page_start: int = Field(
        0, description="Index in ``hits`` of the first match new in this turn (a 'more' page)."
    )
    scope: SearchScope = Field(..., description="The conversation's scope (set at start, read-only).")


def clean_text(text: str, *, what: str = "message") -> str:
    """The message trimmed; :class:`InvalidMessageError` when empty or longer than ``MAX_TEXT_CHARS``."""
    if not isinstance(text, str):
        raise InvalidMessageError(f"the {what} must be text")
    cleaned = text.replace("\x00", "").strip()
    if is_blank(cleaned):
        raise InvalidMessageError(f"the {what} is empty: please type something (nothing was recorded)")
    if len(cleaned) > MAX_TEXT_CHARS:
        raise InvalidMessageError(
            f"the {what} is {len(cleaned):,} characters long; please keep it under {MAX_TEXT_CHARS:,} "
            "characters (nothing was recorded)"
        )
    return cleaned


class ConversationEngine:
    """Runs conversations; state lives in a :class:`StateStore` (SQLite or PostgreSQL) keyed by conversation id.

    Thread-safe: turns of one conversation are serialised (in this process by a lock, across processes by
    the store's compare-and-swap). Sync core; ``a*`` methods run it in a worker thread for async callers.
    """

    def __init__(
        self,
        searcher: Searcher,
        questioner: Questioner,
        store: StateStore | None = None,
        settings: Settings | None = None,
        reranker: AnswerReranker | None = None,
        outcomes: OutcomeLog | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.searcher = searcher
        self.questioner = questioner
        self.reranker = reranker
        """Re-ranks the top candidates by every answer read against its alternatives (:mod:`agent.rerank`)."""
        self.store = store or open_state_store(self.settings)
        self.outcomes = outcomes
        """Where each search's outcome is recorded (:mod:`agent.outcomes`); None: not recorded."""
        self._locks = [threading.Lock() for _ in range(64)]

    # --- public API: one call per user action ----------------------------------------------------------
    def handle(self, conversation_id: str, text: str, scope: ScopeLike = None) -> TurnResult:
        """Any chat message. ``scope`` is used only when this message starts the conversation.

        ``scope=None`` is ``SearchScope()``: public images only. Trusted callers (admin CLI, evaluation)
        pass ``SearchScope.unrestricted()`` explicitly.
        """
        text = clean_text(text)
        with self._lock(conversation_id):
            result = self._handle(conversation_id, text, scope)
            if self.store.take_recovered(conversation_id):
                result = result.model_copy(
                    update={"message": " ".join(filter(None, [RECOVERED_NOTE, result.message]))}
                )
            return result

    def _handle(self, conversation_id: str, text: str, scope: ScopeLike) -> TurnResult:
        state = self.store.get(conversation_id)
        intent = classify(text)
        if state is None:
            if intent.kind in ("restart", "reject_all", "pick", "more"):
                state = ConversationState(conversation_id=conversation_id, scope=as_scope(scope))
                return self._result(state, "shown", "Describe the image you are looking for.")
            return self._start(conversation_id, text, scope)
        if intent.kind == "restart":
            return self._restart(state)
        if state.status == "awaiting_description":
            return self._describe(state, text)
        if intent.kind == "more" and state.status != "found":
            return self._more(state, None)
        if intent.kind == "reject_all":
            return self._reject_all(state)
        if intent.kind == "pick":
            return self._pick(state, intent.pick or 1)
        if state.status == "found":  # a new message after a choice is a new search in the same scope
            return self._describe(self._archived(state), text)
        if intent.kind == "correction":
            return self._correct(state, text)
        return self._answer(state, text, dont_know=intent.kind == "dont_know")

    def start(self, conversation_id: str, description: str, scope: ScopeLike = None) -> TurnResult:
        """Begin (or begin again) a search with the user's description, within ``scope`` (default: public)."""
        description = clean_text(description, what="description")
        with self._lock(conversation_id):
            return self._start(conversation_id, description, scope)

    def answer(self, conversation_id: str, text: str) -> TurnResult:
        """The user's answer to the pending question, taken literally (no command recognition)."""
        text = clean_text(text, what="answer")
        with self._lock(conversation_id):
            state = self._require(conversation_id)
            if state.status == "awaiting_description":
                return self._describe(state, text)
            if state.status == "found":
                return self._describe(self._archived(state), text)
            return self._answer(state, text)

    def correct(self, conversation_id: str, text: str) -> TurnResult:
        """A correction of something said earlier, appended as a round of its own."""
        text = clean_text(text, what="correction")
        with self._lock(conversation_id):
            state = self._require(conversation_id)
            if state.status == "awaiting_description":
                return self._describe(state, text)
            return self._correct(state, text)

    def choose(self, conversation_id: str, hit_id: str) -> TurnResult:
        """ "This one": the user picked an image shown in this conversation; the search is done."""
        with self._lock(conversation_id):
            state = self._require(conversation_id)
            hit = next((h for h in reversed(state.seen) if h.id == hit_id), None)
            if hit is None:
                raise InvalidMessageError("that image is not one of the matches shown in this conversation")
            return self._choose(state, hit)

    def reject_all(self, conversation_id: str) -> TurnResult:
        """ "None of these": the shown images are excluded from later searches; new matches are shown."""
        with self._lock(conversation_id):
            return self._reject_all(self._require(conversation_id))

    def restart(self, conversation_id: str) -> TurnResult:
        """ "Start over": the search is archived; the next message is a new description (same scope).

        Also the way out of a conversation whose saved state was damaged (it reads as a new one)."""
        with self._lock(conversation_id):
            state = self.store.get(conversation_id)
            if state is None and self.store.take_recovered(conversation_id):
                fresh = ConversationState(conversation_id=conversation_id)
                return self._result(
                    fresh, "shown", f"{RECOVERED_NOTE} Describe the image you are looking for."
                )
            return self._restart(self._require(conversation_id))

    def more(self, conversation_id: str, count: int | None = None) -> TurnResult:
        """ "More": the next ``count`` matches (default CHATIR_TOP_K) are added to those shown, in the same
        ranking (no new question, no new round)."""
        with self._lock(conversation_id):
            return self._more(self._require(conversation_id), count)

    def get(self, conversation_id: str) -> ConversationState | None:
        return self.store.get(conversation_id)

    def current(self, conversation_id: str) -> TurnResult:
        """The conversation as it stands (no search): for redrawing a page or a message."""
        state = self._require(conversation_id)
        return self._result(state, "shown", None)

    # --- async variants (web front-end) --------------------------------------------------------------
    async def ahandle(self, conversation_id: str, text: str, scope: ScopeLike = None) -> TurnResult:
        return await asyncio.to_thread(self.handle, conversation_id, text, scope)

    async def astart(self, conversation_id: str, description: str, scope: ScopeLike = None) -> TurnResult:
        return await asyncio.to_thread(self.start, conversation_id, description, scope)

    async def aanswer(self, conversation_id: str, text: str) -> TurnResult:
        return await asyncio.to_thread(self.answer, conversation_id, text)

    async def achoose(self, conversation_id: str, hit_id: str) -> TurnResult:
        return await asyncio.to_thread(self.choose, conversation_id, hit_id)

    async def areject_all(self, conversation_id: str) -> TurnResult:
        return await asyncio.to_thread(self.reject_all, conversation_id)

    async def arestart(self, conversation_id: str) -> TurnResult:
        return await asyncio.to_thread(self.restart, conversation_id)

    async def amore(self, conversation_id: str, count: int | None = None) -> TurnResult:
        return await asyncio.to_thread(self.more, conversation_id, count)

    async def acurrent(self, conversation_id: str) -> TurnResult:
        return await asyncio.to_thread(self.current, conversation_id)

    # --- turns ----------------------------------------------------------------------------------------
    def _start(self, conversation_id: str, description: str, scope: ScopeLike) -> TurnResult:
        self._sync_model()
        previous = self.store.get(conversation_id)
        base = self._archived(previous) if previous else ConversationState(conversation_id=conversation_id)
        return self._describe(base.model_copy(update={"scope": as_scope(scope)}), description)

    def _sync_model(self) -> None:
        """Once per conversation: the questioner checks the model behind its cached text embeddings is
        still the service's (a failure here is not the user's: the search right after reports it)."""
        sync = getattr(self.questioner, "sync_model", None)
        if not callable(sync):
            return
        try:
            sync()
        except ChatIRError as error:
            logger.warning("could not check the service's model: %s", error)

    def _describe(self, state: ConversationState, description: str) -> TurnResult:
        state = state.model_copy(deep=True)
        state.dialog = Dialog(caption=description)
        return self._search_and_ask(state, "started", None, ask_new=True)

    def _answer(self, state: ConversationState, text: str, *, dont_know: bool = False) -> TurnResult:
        dialog = state.dialog
        assert dialog is not None
        self._check_room(state)
        state = state.model_copy(deep=True)
        question = state.pending_question or ""
        state.dialog = Dialog(
            caption=dialog.caption, rounds=[*dialog.rounds, Round(question=question, answer=text)]
        )
        state.pending_question = None
        note = None
        if dont_know:
            note = "No problem, I'll ask something else."
        elif not question:
            note = "Added that to the description."
        return self._search_and_ask(state, "answered", note, ask_new=True)

    def _correct(self, state: ConversationState, text: str) -> TurnResult:
        dialog = state.dialog
        assert dialog is not None
        self._check_room(state)
        state = state.model_copy(deep=True)
        state.dialog = Dialog(
            caption=dialog.caption, rounds=[*dialog.rounds, Round(question="", answer=text)]
        )
        # the pending question (if any) was not answered: it stays pending and is asked again
        return self._search_and_ask(
            state, "corrected", "Thanks, noted the correction.", ask_new=state.pending_question is None
        )

    def _reject_all(self, state: ConversationState) -> TurnResult:
        if state.dialog is None or not state.shown:
            raise InvalidMessageError("there are no matches to reject yet: describe the image first")
        state = state.model_copy(deep=True)
        state.excluded_ids = list(dict.fromkeys([*state.excluded_ids, *(h.id for h in state.shown)]))
        state.chosen = None
        note = f"OK, I won't show those {len(state.shown)} again."
        return self._search_and_ask(state, "rejected", note, ask_new=state.pending_question is None)

    def _more(self, state: ConversationState, count: int | None) -> TurnResult:
        count = self.settings.top_k if count is None else count
        if count < 1:
            raise InvalidMessageError("ask for at least one more match")
        if state.dialog is None or state.status == "found" or not state.shown:
            raise InvalidMessageError("there are no matches to page through: describe the image first")
        if len(state.shown) >= MAX_SHOWN:
            raise InvalidMessageError(f"that's the first {MAX_SHOWN} matches; tell me more to narrow them")
        wanted = min(MAX_SHOWN, len(state.shown) + count)
        known = {h.id for h in state.shown}
        extra = [h for h in without_vectors(self._ranked(state, wanted)) if h.id not in known]
        extra = extra[: wanted - len(state.shown)]
        if not extra:
            raise InvalidMessageError("there are no more matches in the images you can see")
        state = state.model_copy(deep=True)
        state.shown = [*state.shown, *extra]
        seen = {h.id: h for h in state.seen}
        seen.update((h.id, h) for h in extra)
        state.seen = list(seen.values())[-MAX_SEEN:]
        saved = self.store.save(state)
        self._note(saved, "more")
        result = self._result(saved, "more", f"Matches {len(known) + 1}-{len(saved.shown)}.")
        return result.model_copy(update={"page_start": len(known)})

    def _pick(self, state: ConversationState, position: int) -> TurnResult:
        if not state.shown:
            raise InvalidMessageError("there are no matches to pick from yet: describe the image first")
        index = len(state.shown) - 1 if position == -1 else position - 1
        if not 0 <= index < len(state.shown):
            raise InvalidMessageError(
                f"there are only {len(state.shown)} matches shown; pick one of 1-{len(state.shown)} "
                '(for example "the 2nd one")'
            )
        return self._choose(state, state.shown[index])

    def _choose(self, state: ConversationState, hit: Hit) -> TurnResult:
        rank = next((i for i, shown in enumerate(state.shown, start=1) if shown.id == hit.id), None)
        state = state.model_copy(deep=True)
        state.status = "found"
        state.chosen = hit
        state.pending_question = None
        saved = self.store.save(state)
        self._note(saved, "chosen", rank=rank)
        return self._result(saved, "chosen", "Great, glad I could help.")

    def _restart(self, state: ConversationState) -> TurnResult:
        saved = self.store.save(self._archived(state))
        self._note(saved, "restarted")
        return self._result(saved, "restarted", "Starting over. Describe the image you are looking for.")

    # --- helpers --------------------------------------------------------------------------------------
    def _archived(self, state: ConversationState) -> ConversationState:
        """A fresh search in the same conversation (same scope); the old dialog is kept in ``archived``."""
        archived = [*state.archived, state.dialog][-MAX_ARCHIVED:] if state.dialog else list(state.archived)
        return ConversationState(
            conversation_id=state.conversation_id,
            scope=state.scope,
            archived=archived,
            version=state.version,
            created_at=state.created_at,
        )

    def _check_room(self, state: ConversationState) -> None:
        if state.rounds >= MAX_DIALOG_ROUNDS:
            raise InvalidMessageError(
                f'this search already has {MAX_DIALOG_ROUNDS} rounds; pick an image or say "start over"'
            )

    def _bound_questioner(self, state: ConversationState) -> Questioner:
        if isinstance(self.questioner, ScopeAware):
            return self.questioner.with_scope(self._search_scope(state))
        return self.questioner

    def _search_and_ask(
        self, state: ConversationState, action: Action, note: str | None, *, ask_new: bool
    ) -> TurnResult:
        """Search with the (already updated) dialog, pick the next question, save, and report."""
        assert state.dialog is not None
        top_k = self.settings.top_k
        needed = max(top_k, getattr(self.questioner, "candidates_needed", 0))
        candidates = self._ranked(state, needed)
        state.shown = without_vectors(candidates[:top_k])
        seen = {h.id: h for h in state.seen}
        seen.update((h.id, h) for h in state.shown)
        state.seen = list(seen.values())[-MAX_SEEN:]
        state.chosen = None

        if state.rounds >= self.settings.max_rounds:
            state.pending_question = None
            state.status = "gave_up"
            note = note or (
                f'That\'s {state.rounds} rounds. Pick one of these, say "none of these", tell me more, '
                'or "start over".'
            )
        else:
            if ask_new:
                state.pending_question = self._next_question(state, candidates)
                if state.pending_question:
                    state.asked.append(state.pending_question)
            state.status = "asking" if state.pending_question else "showing"
            if not candidates:
                note = note or "Nothing matches yet in the images you can see."
            elif state.status == "showing" and action in ("started", "answered"):
                note = note or 'I think it\'s one of these. If not, say "none of these" or tell me more.'
        saved = self.store.save(state)
        self._note(saved, action)
        return self._result(saved, action, note)

    def _ranked(self, state: ConversationState, k: int) -> list[Hit]:
        """The best ``k`` images for the conversation's dialog in its scope (re-ranked by the answers when a
        re-ranker is set; with vectors when the questioner needs them)."""
        assert state.dialog is not None
        # re-read the answers (and what the description implies) over a larger pool, when there is any
        if self.reranker is not None and self.reranker.evidence(state.dialog):
            pool_k, scope = max(k, self.reranker.pool), self._search_scope(state)
            # a bare pool (ids, scores, vectors) and full hits for the kept only, when the searcher offers it
            if isinstance(self.searcher, PoolSearcher):
                return self._reranked_pool(self.searcher, self.reranker, state.dialog, k, pool_k, scope)
            candidates = self.searcher.search(state.dialog, k=pool_k, scope=scope, with_vectors=True)
            return self.reranker.rerank(state.dialog, candidates)[:k]
        vectors = bool(getattr(self.questioner, "needs_vectors", False))
        return self.searcher.search(state.dialog, k=k, scope=self._search_scope(state), with_vectors=vectors)

    @staticmethod
    def _reranked_pool(
        searcher: PoolSearcher,
        reranker: AnswerReranker,
        dialog: Dialog,
        k: int,
        pool_k: int,
        scope: SearchScope,
    ) -> list[Hit]:
        """The re-ranked top ``k`` of a ``pool_k`` pool: the same hits, scores and vectors as re-ranking full hits,
        but only the ``k`` kept are built and sent (an image deleted between the two calls is left out)."""
        pool = searcher.pool(dialog, k=pool_k, scope=scope)
        order, shown = reranker.ranking(dialog, pool.vectors, pool.scores)
        kept = order[:k]
        found = {hit.id: hit for hit in searcher.lookup([pool.ids[i] for i in kept], scope=scope)}
        return [
            found[pool.ids[i]].model_copy(
                update={"score": float(shown[i]), "vector_base64": pack(pool.vectors[i]), "vector": None}
            )
            for i in kept
            if pool.ids[i] in found
        ]

    def _next_question(self, state: ConversationState, candidates: list[Hit]) -> str | None:
        assert state.dialog is not None
        try:
            question = self._bound_questioner(state).next_question(
                state.dialog, candidates, list(state.asked)
            )
        except Exception:  # a questioner bug must not cost the user their turn
            logger.exception("questioner %r failed; showing matches without a question", self.questioner)
            return None
        if question is None:
            return None
        question = " ".join(question.split())[:MAX_TEXT_CHARS]
        if not question or is_repeat(question, state.asked):
            logger.warning(
                "questioner %r offered a repeated or empty question %r; not asking it",
                self.questioner,
                question,
            )
            return None
        return question

    @staticmethod
    def _search_scope(state: ConversationState) -> SearchScope:
        """The stored scope, narrowed by the images rejected with "None of these"."""
        return state.scope.narrow(exclude_ids=state.excluded_ids)

    def _require(self, conversation_id: str) -> ConversationState:
        state = self.store.get(conversation_id)
        if state is None:
            # said to the person: the key is internal ("web:…", "slack:T/C/ts") and stays in the log
            logger.info("no conversation %r", conversation_id)
            raise ConversationNotFoundError(
                "this conversation has not started (or was forgotten); start one with a description of the image"
            )
        return state

    def _lock(self, conversation_id: str) -> threading.Lock:
        if not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= MAX_ID_CHARS:
            raise InvalidMessageError(f"a conversation id must be 1-{MAX_ID_CHARS} characters of text")
        return self._locks[zlib.crc32(conversation_id.encode()) % len(self._locks)]

    def _note(self, state: ConversationState, action: str, *, rank: int | None = None) -> None:
        """Records the saved turn in the outcome log; a failing log never costs the user their turn."""
        if self.outcomes is None:
            return
        try:
            name = str(getattr(self.questioner, "name", type(self.questioner).__name__))
            self.outcomes.record(
                state.conversation_id, action, rounds=state.rounds, questioner=name, rank=rank
            )
        except Exception:  # measurement is a side channel: never the turn's failure
            logger.exception("could not record the outcome of %s", state.conversation_id)

    def close(self) -> None:
        """Close the state store and the outcome log (the searcher and questioner belong to the caller)."""
        self.store.close()
        if self.outcomes is not None:
            self.outcomes.close()

    @staticmethod
    def _result(state: ConversationState, action: Action, message: str | None) -> TurnResult:
        question = state.pending_question if state.status == "asking" else None
        if state.status == "awaiting_description":
            question = None
        return TurnResult(
            conversation_id=state.conversation_id,
            state=state.status,
            action=action,
            round=state.rounds,
            question=question,
            hits=list(state.shown),
            dialog=state.dialog,
            chosen=state.chosen,
            message=message,
            excluded_count=len(state.excluded_ids),
            scope=state.scope,
        )
