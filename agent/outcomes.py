"""The outcome log: how each search ended, for measuring the system on real people (``chatir stats``).

One row per *search* (a description and everything until it ends). A search ends in exactly one outcome:

- ``found``: the person picked an image -- at which dialog round (0 = right after the description: ChatIR's
  first-hitting time) and at which rank of the matches shown (Hits@K);
- ``none_of_these``: the person rejected the matches ("None of these") and then went quiet;
- ``abandoned``: the person went quiet otherwise (no turn for ``abandon_after_s``; decided when the log is read,
  and undone if they come back to the same search);
- ``started_over``: "Start over", or a new description while the search was still open.

A "was this helpful?" answer after a pick is kept with the found search. **No message text is stored**: no
description, question, answer or image id -- only counts, ranks, the front-end (``slack``, ``web``,
``terminal``), the questioner's name and times. Conversations are linked by a SHA-256 of their id (the id holds
Slack channel and thread ids), never the id itself. Rows older than the retention
(``CHATIR_OUTCOME_RETENTION_DAYS``) are deleted; 0 turns the log off.

The log is its own SQLite file (``CHATIR_HOME/outcomes.sqlite``), apart from the conversation state; when
``CHATIR_STATE_URL`` names PostgreSQL it is the ``chatir_outcomes`` table of that database instead, shared by
every bot / web replica (:mod:`agent.outcome_db`: one log, a thin layer per database). Behind this small
interface: the engine calls :meth:`OutcomeLog.record` after each saved turn; front-ends call
:meth:`OutcomeLog.feedback`; ``chatir stats`` reads :meth:`OutcomeLog.searches` and :func:`summarize`.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from agent.outcome_db import OutcomeDatabase, OutcomeSession, SqliteOutcomeDatabase

logger = logging.getLogger(__name__)

Outcome = Literal["found", "none_of_these", "abandoned", "started_over"]
OUTCOMES: tuple[Outcome, ...] = ("found", "none_of_these", "abandoned", "started_over")
ABANDON_AFTER_S = 30 * 60.0
"""A search with no turn for this long counts as abandoned (or ``none_of_these`` after a rejection)."""
HITS_AT = (1, 5, 10)
FRONTENDS = {"slack": "slack", "web": "web", "cli": "terminal"}
"""Conversation id prefix -> front-end name (``slack:...``, ``web:...``, ``cli:...``)."""


def conversation_key(conversation_id: str) -> str:
    """What the log stores instead of the conversation id (which names Slack channels and threads)."""
    return hashlib.sha256(conversation_id.encode()).hexdigest()[:32]


def frontend_of(conversation_id: str) -> str:
    """The front-end a conversation id belongs to (its prefix), ``other`` when unknown."""
    prefix = conversation_id.split(":", 1)[0] if ":" in conversation_id else ""
    return FRONTENDS.get(prefix, "other")


class SearchOutcome(BaseModel):
    """One search as the log holds it (no text)."""

    frontend: str
    questioner: str
    started_at: float
    last_at: float
    last_action: str
    rounds: int = 0
    rejections: int = 0
    outcome: Outcome | None = Field(None, description="None while the search is still open.")
    ended_at: float | None = None
    found_round: int | None = Field(
        None, description="Dialog rounds before the pick (0: right after the description)."
    )
    found_rank: int | None = Field(
        None, description="Rank of the picked image among the matches shown (1 = top)."
    )
    helpful: bool | None = None


class OutcomeLog:
    """The outcome log over a SQLite file (a path) or any :class:`~agent.outcome_db.OutcomeDatabase` (PostgreSQL:
    shared by replicas); thread-safe, and several processes may share it."""

    def __init__(
        self,
        database: str | Path | OutcomeDatabase,
        *,
        retention_days: float = 180,
        abandon_after_s: float = ABANDON_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database: OutcomeDatabase = (
            SqliteOutcomeDatabase(database) if isinstance(database, str | Path) else database
        )
        self.retention_days = retention_days
        self.abandon_after_s = abandon_after_s
        self.clock = clock
        self.purge()

    # --- writing ------------------------------------------------------------------------------------
    def record(
        self, conversation_id: str, action: str, *, rounds: int, questioner: str, rank: int | None = None
    ) -> None:
        """One saved engine turn: ``action`` is the engine's (started, answered, corrected, rejected, more,
        chosen, restarted); ``rounds`` the dialog's rounds after it; ``rank`` the picked image's (chosen)."""
        key, now = conversation_key(conversation_id), self.clock()
        with self.database.transaction() as db:
            db.lock_conversation(key)
            row = db.execute(
                "SELECT id FROM {table} WHERE conversation = ? AND outcome IS NULL "
                "ORDER BY id DESC LIMIT 1{for_update}",
                (key,),
            ).fetchone()
            open_id = row[0] if row else None
            if action == "started":
                if open_id is not None:
                    self._end(db, open_id, "started_over", now)
                self._open(db, key, conversation_id, questioner, now, rounds)
                return
            if action == "restarted":
                if open_id is not None:
                    self._end(db, open_id, "started_over", now)
                return
            if open_id is None:
                open_id = self._resume(db, key, action)
            if open_id is None:  # a search older than the log (or than a purge): count it from here
                open_id = self._open(db, key, conversation_id, questioner, now, rounds)
            db.execute(
                "UPDATE {table} SET last_at = ?, last_action = ?, rounds = ?, "
                "rejections = rejections + ? WHERE id = ?",
                (now, action, rounds, int(action == "rejected"), open_id),
            )
            if action == "chosen":
                db.execute(
                    "UPDATE {table} SET outcome = 'found', ended_at = ?, found_round = ?, found_rank = ? "
                    "WHERE id = ?",
                    (now, rounds, rank, open_id),
                )

    def feedback(self, conversation_id: str, helpful: bool) -> bool:
        """The answer to "was this helpful?" for the conversation's latest found search (False: none found)."""
        key = conversation_key(conversation_id)
        with self.database.transaction() as db:
            db.lock_conversation(key)
            row = db.execute(
                "SELECT id FROM {table} WHERE conversation = ? AND outcome = 'found' "
                "ORDER BY id DESC LIMIT 1{for_update}",
                (key,),
            ).fetchone()
            if row is None:
                return False
            db.execute("UPDATE {table} SET helpful = ? WHERE id = ?", (int(helpful), row[0]))
            return True

    def close_idle(self) -> int:
        """Ends every open search idle for ``abandon_after_s``: ``none_of_these`` when its last action was a
        rejection, else ``abandoned``. Returns how many were ended."""
        cutoff = self.clock() - self.abandon_after_s
        with self.database.transaction() as db:
            ended = db.execute(
                "UPDATE {table} SET outcome = CASE WHEN last_action = 'rejected' THEN 'none_of_these' "
                "ELSE 'abandoned' END, ended_at = last_at WHERE outcome IS NULL AND last_at < ?",
                (cutoff,),
            ).rowcount
        return int(ended)

    def purge(self) -> int:
        """Deletes searches that started before the retention period; returns how many."""
        if self.retention_days <= 0:
            return 0
        cutoff = self.clock() - self.retention_days * 86400
        with self.database.transaction() as db:
            return int(db.execute("DELETE FROM {table} WHERE started_at < ?", (cutoff,)).rowcount)

    # --- reading ------------------------------------------------------------------------------------
    def searches(self, since: float | None = None) -> list[SearchOutcome]:
        """Every search that started at or after ``since`` (unix seconds), idle ones ended first."""
        self.close_idle()
        self.purge()
        with self.database.reading() as db:
            rows = db.execute(
                "SELECT frontend, questioner, started_at, last_at, last_action, rounds, rejections, outcome, "
                "ended_at, found_round, found_rank, helpful FROM {table} WHERE started_at >= ? ORDER BY id",
                (since or 0.0,),
            ).fetchall()
        fields = list(SearchOutcome.model_fields)
        return [
            SearchOutcome(
                **dict(zip(fields, (*row[:11], None if row[11] is None else bool(row[11])), strict=True))
            )
            for row in rows
        ]

    def close(self) -> None:
        self.database.close()

    # --- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _open(
        db: OutcomeSession, key: str, conversation_id: str, questioner: str, now: float, rounds: int
    ) -> int:
        row = db.execute(
            "INSERT INTO {table} (conversation, frontend, questioner, started_at, last_at, last_action, rounds) "
            "VALUES (?, ?, ?, ?, ?, 'started', ?) RETURNING id",
            (key, frontend_of(conversation_id), questioner, now, now, rounds),
        ).fetchall()  # all of it: SQLite commits only once every statement has finished
        return int(row[0][0])

    @staticmethod
    def _resume(db: OutcomeSession, key: str, action: str) -> int | None:
        """The conversation's latest search, when this turn continues it: a person back after the idle
        timeout (its abandonment was provisional: it is open again), or a second pick in a found search
        (the later pick counts)."""
        last = db.execute(
            "SELECT id, outcome FROM {table} WHERE conversation = ? ORDER BY id DESC LIMIT 1{for_update}",
            (key,),
        ).fetchone()
        if last is None:
            return None
        if last[1] in ("abandoned", "none_of_these"):
            db.execute("UPDATE {table} SET outcome = NULL, ended_at = NULL WHERE id = ?", (last[0],))
            return int(last[0])
        if last[1] == "found" and action == "chosen":
            return int(last[0])
        return None

    @staticmethod
    def _end(db: OutcomeSession, search_id: int, outcome: Outcome, now: float) -> None:
        db.execute("UPDATE {table} SET outcome = ?, ended_at = ? WHERE id = ?", (outcome, now, search_id))


# --- the figures ``chatir stats`` prints ----------------------------------------------------------------
class OutcomeSummary(BaseModel):
    """Figures of a group of searches. Rates are over *ended* searches (open ones are counted apart)."""

    group: str
    ended: int
    open: int
    counts: dict[str, int] = Field(description="Ended searches per outcome.")
    success_rate: float | None = Field(None, description="found / ended.")
    turns_mean: float | None = Field(
        None, description="Mean dialog rounds before the pick (first-hitting time)."
    )
    turns_median: float | None = None
    rank_mean: float | None = Field(None, description="Mean rank of the picked image.")
    hits_at: dict[int, float] = Field(
        default_factory=dict, description="K -> share of ended searches found at rank <= K (any turn)."
    )
    found_by_turn: list[float] = Field(
        default_factory=list, description="t -> share of ended searches found by round t (cumulative)."
    )
    helpful: int = 0
    not_helpful: int = 0


def summarize(group: str, searches: Iterable[SearchOutcome], *, max_turn: int = 10) -> OutcomeSummary:
    items = list(searches)
    ended = [s for s in items if s.outcome is not None]
    found = [s for s in ended if s.outcome == "found"]
    turns = [s.found_round for s in found if s.found_round is not None]
    ranks = [s.found_rank for s in found if s.found_rank is not None]
    n = len(ended)
    return OutcomeSummary(
        group=group,
        ended=n,
        open=len(items) - n,
        counts={o: sum(s.outcome == o for s in ended) for o in OUTCOMES},
        success_rate=len(found) / n if n else None,
        turns_mean=statistics.fmean(turns) if turns else None,
        turns_median=statistics.median(turns) if turns else None,
        rank_mean=statistics.fmean(ranks) if ranks else None,
        hits_at={k: sum(r <= k for r in ranks) / n for k in HITS_AT} if n else {},
        found_by_turn=[sum(t <= turn for t in turns) / n for turn in range(max_turn + 1)] if n else [],
        helpful=sum(s.helpful is True for s in found),
        not_helpful=sum(s.helpful is False for s in found),
    )


def summaries(searches: Sequence[SearchOutcome]) -> list[OutcomeSummary]:
    """All searches, then one group per front-end and one per questioner."""
    out = [summarize("all", searches)]
    for label, key in (("front-end", "frontend"), ("questioner", "questioner")):
        for value in sorted({getattr(s, key) for s in searches}):
            out.append(summarize(f"{label}: {value}", [s for s in searches if getattr(s, key) == value]))
    return out
