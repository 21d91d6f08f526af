"""The outcome log (agent/outcomes.py) fed by the real engine, and ``chatir stats`` reading it.

Every test runs against both places the log can live: its SQLite file (the default) and the PostgreSQL database
``CHATIR_STATE_URL`` names (a real server, tests/postgres_server.py), where several replicas share it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent import ConversationEngine, open_state_store
from agent.factory import build_outcome_log
from agent.outcomes import OutcomeLog, frontend_of, summaries, summarize
from agent.questioners import InfoGainQuestioner, ModelCandidateScorer
from agent.state_backends import open_outcome_database
from chatir.errors import ChatIRError
from chatir.schemas import PUBLIC
from chatir.settings import Settings
from frontends.stats import parse_since, render
from tests.test_agent_support import GALLERY, TOY_BANK, KeywordModel, toy_oracle, toy_searcher
from tools.scope import SearchScope

SCOPE = SearchScope(allowed=[PUBLIC])
TARGET = GALLERY[7]
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path) -> Settings:
    """SQLite: the log under CHATIR_HOME; postgres: CHATIR_STATE_URL names a fresh database (state and log)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Settings(home=tmp_path, top_k=5, max_rounds=10, state_url=url)


@pytest.fixture
def log(settings, clock):
    log = OutcomeLog(open_outcome_database(settings), retention_days=30, abandon_after_s=600, clock=clock)
    yield log
    log.close()


def make_engine(settings: Settings, log: OutcomeLog | None) -> ConversationEngine:
    model = KeywordModel()
    searcher = toy_searcher(model)
    questioner = InfoGainQuestioner(ModelCandidateScorer(model, searcher), TOY_BANK)
    return ConversationEngine(searcher, questioner, open_state_store(settings), settings, outcomes=log)


@pytest.fixture
def engine(settings, log):
    engine = make_engine(settings, log)
    yield engine
    engine.store.close()


def stored_bytes(settings: Settings) -> bytes:
    """Everything the log keeps, as bytes: the SQLite files, or every row of the PostgreSQL table as text."""
    if settings.state_url is None:
        return b"".join(Path(p).read_bytes() for p in settings.home.glob("outcomes.sqlite*"))
    import psycopg

    with psycopg.connect(settings.state_url.get_secret_value()) as db:
        rows = db.execute("SELECT t::text FROM chatir_outcomes t").fetchall()
    assert rows
    return "\n".join(r[0] for r in rows).encode()


def count_searches(settings: Settings) -> int:
    """Rows in the log, read behind its back."""
    if settings.state_url is None:
        with sqlite3.connect(settings.outcomes_db) as db:
            return int(db.execute("SELECT count(*) FROM searches").fetchone()[0])
    import psycopg

    with psycopg.connect(settings.state_url.get_secret_value()) as db:
        row = db.execute("SELECT count(*) FROM chatir_outcomes").fetchone()
        assert row is not None
        return int(row[0])


def find_target(engine: ConversationEngine, cid: str, max_rounds: int = 8) -> int:
    """Describe TARGET, answer like the oracle until it shows, pick it; returns the rank it was picked at."""
    result = engine.handle(cid, f"a {TARGET.colour} shape", SCOPE)
    for _ in range(max_rounds):
        ids = [h.id for h in result.hits]
        if TARGET.id in ids:
            engine.choose(cid, TARGET.id)
            return ids.index(TARGET.id) + 1
        assert result.question
        result = engine.handle(cid, toy_oracle(TARGET, result.question))
    raise AssertionError("the target never showed")


def test_every_ending_is_recorded_without_any_text(engine, log, clock, settings):
    rank = find_target(engine, "web:found")
    engine.handle("slack:T1:DSECRETDM:1.1", "a blue circle", SCOPE)
    engine.restart("slack:T1:DSECRETDM:1.1")  # started over
    engine.handle("cli:quiet", "a shape", SCOPE)  # then nothing: abandoned
    engine.handle("cli:rejects", "a yellow thing", SCOPE)
    engine.reject_all("cli:rejects")  # then nothing: none of these
    clock.now += 60
    assert [s.outcome for s in log.searches()] == [
        "found",
        "started_over",
        None,
        None,
    ]  # not idle long enough
    clock.now += 600
    searches = log.searches()
    assert [(s.frontend, s.outcome) for s in searches] == [
        ("web", "found"),
        ("slack", "started_over"),
        ("terminal", "abandoned"),
        ("terminal", "none_of_these"),
    ]
    found = searches[0]
    assert found.found_rank == rank and found.found_round == found.rounds and found.questioner == "info_gain"
    assert searches[3].rejections == 1
    # no message text, no conversation id, no image id anywhere in the file (or the table); each needle is long
    # enough not to turn up by chance in SQLite's binary pages (a two-byte "D1" once did, in CI)
    raw = stored_bytes(settings)
    assert b"info_gain" in raw  # the check can see what is stored
    for secret in (b"blue circle", b"yellow thing", b"shape", b"slack:T1", b"DSECRETDM", TARGET.id.encode()):
        assert secret not in raw, secret


def test_coming_back_after_the_timeout_continues_the_same_search(engine, log, clock):
    first = engine.handle("slack:T:D:2.2", "a shape", SCOPE)
    clock.now += 3600
    assert [s.outcome for s in log.searches()] == ["abandoned"]  # as far as anyone could tell
    answered = engine.handle("slack:T:D:2.2", toy_oracle(TARGET, first.question))
    assert [s.outcome for s in log.searches()] == [None]
    engine.choose("slack:T:D:2.2", answered.hits[0].id)
    assert [(s.outcome, s.found_round, s.found_rank) for s in log.searches()] == [("found", 1, 1)]


def test_a_new_description_after_a_pick_is_a_new_search_and_feedback_lands_on_the_pick(engine, log):
    find_target(engine, "web:twice")
    assert log.feedback("web:twice", helpful=False)
    engine.handle("web:twice", "something else now", SCOPE)  # a new search in the same conversation
    engine.handle("web:twice", "a red one", SCOPE)  # an answer
    engine.start("web:twice", "another description", SCOPE)  # a new search while one is open
    searches = log.searches()
    assert [s.outcome for s in searches] == ["found", "started_over", None]
    assert searches[0].helpful is False and searches[1].rounds == 1
    assert not log.feedback("web:never", helpful=True)


def test_a_second_pick_in_the_same_search_replaces_the_first(engine, log):
    first = engine.handle("web:p", "a shape", SCOPE)
    engine.choose("web:p", first.hits[0].id)
    engine.choose("web:p", first.hits[2].id)
    searches = log.searches()
    assert len(searches) == 1 and searches[0].found_rank == 3


def test_retention_deletes_old_searches_and_zero_means_off(engine, log, clock, settings):
    engine.handle("web:old", "a shape", SCOPE)
    clock.now += 31 * 86400
    engine.handle("web:new", "a shape", SCOPE)
    assert len(log.searches(since=0)) == 1
    assert count_searches(settings) == 1

    assert build_outcome_log(settings.model_copy(update={"outcome_retention_days": 0})) is None
    kept = build_outcome_log(settings)
    assert kept is not None and kept.retention_days == 180
    kept.close()


def test_a_broken_log_never_costs_the_turn(engine, log):
    log.close()  # every write now fails
    result = engine.handle("web:x", "a shape", SCOPE)
    assert result.hits and result.action == "started"


def test_the_log_survives_a_new_process_and_is_shared(settings, engine, log, clock):
    engine.handle("web:s", "a shape", SCOPE)
    again = OutcomeLog(open_outcome_database(settings), retention_days=30, clock=clock)
    engine2 = make_engine(settings, again)
    engine2.choose("web:s", engine2.current("web:s").hits[1].id)
    assert [(s.outcome, s.found_rank) for s in log.searches()] == [("found", 2)]
    assert count_searches(settings) == 1
    engine2.close()


def test_summaries_compute_hits_and_first_hitting_time(engine, log, clock):
    ranks = [find_target(engine, f"web:{i}") for i in range(3)]
    engine.handle("cli:a", "a shape", SCOPE)
    clock.now += 3600
    rows = summaries(log.searches())
    overall = rows[0]
    assert overall.group == "all" and overall.ended == 4 and overall.open == 0
    assert overall.success_rate == pytest.approx(0.75)
    assert overall.hits_at[10] == pytest.approx(0.75)
    assert overall.hits_at[1] == pytest.approx(sum(r == 1 for r in ranks) / 4)
    assert overall.found_by_turn[-1] == pytest.approx(0.75)
    assert [r.group for r in rows] == [
        "all",
        "front-end: terminal",
        "front-end: web",
        "questioner: info_gain",
    ]
    assert rows[1].success_rate == 0 and rows[2].success_rate == 1
    empty = summarize("none", [])
    assert empty.success_rate is None and empty.hits_at == {}
    text = render(rows, since=0)
    assert "Hits@10" in text and "75.0%" in text and "front-end: web" in text


def test_frontends_and_since():
    assert [frontend_of(c) for c in ("slack:T:C:1", "web:x", "cli:y", "eval-3", "x:y")] == [
        "slack",
        "web",
        "terminal",
        "other",
        "other",
    ]
    assert parse_since("7d", now=1_000_000) == 1_000_000 - 7 * 86400
    assert parse_since("2026-11-01") == parse_since("2026-11-01T00:00:00+00:00")
    with pytest.raises(ChatIRError, match="--since"):
        parse_since("last tuesday")


def test_chatir_stats_reports_recorded_conversations(engine, log, settings):
    """The command, as a person runs it, on conversations the engine just recorded."""
    find_target(engine, "web:cmd")
    engine.handle("cli:cmd", "a shape", SCOPE)
    engine.restart("cli:cmd")
    env = {**os.environ, "CHATIR_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    env.pop("CHATIR_STATE_URL", None)
    if settings.state_url is not None:
        env["CHATIR_STATE_URL"] = settings.state_url.get_secret_value()
    command = [sys.executable, "-m", "frontends.main", "stats", "--since", "3650d"]
    # the engine's clock is years ahead of the real one: look far ahead and back
    text = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "front-end: web" in text and "front-end: terminal" in text and "questioner: info_gain" in text
    figures = json.loads(
        subprocess.run(
            [*command, "--json"], env=env, capture_output=True, text=True, timeout=120, check=True
        ).stdout
    )
    overall = figures[0]
    assert overall["ended"] == 2 and overall["success_rate"] == 0.5 and overall["counts"]["started_over"] == 1
    if settings.state_url is None:
        missing = subprocess.run(
            command,
            env={**env, "CHATIR_HOME": str(settings.home / "nothing")},
            capture_output=True,
            text=True,
        )
        assert missing.returncode == 1 and "no outcome log" in missing.stderr


def test_replicas_recording_one_conversation_at_once_keep_one_search(settings, clock):
    """Two logs (two replicas), four threads each, recording turns of one conversation the log has never seen:
    each write takes its turn (SQLite: BEGIN IMMEDIATE; PostgreSQL: a lock on the conversation), so exactly one
    search is opened, not one per replica or thread."""
    replicas = [OutcomeLog(open_outcome_database(settings), retention_days=30, clock=clock) for _ in range(2)]
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def answer(log: OutcomeLog, worker: int) -> None:
        start.wait()
        try:
            for turn in range(10):
                log.record("slack:T:C:race", "answered", rounds=worker * 10 + turn, questioner="info_gain")
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=answer, args=(replicas[i % 2], i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    searches = replicas[1].searches()
    assert len(searches) == 1 and searches[0].outcome is None and searches[0].frontend == "slack"
    for log in replicas:
        log.close()


def test_two_replicas_share_the_log_and_chatir_stats_reports_both(postgres_url, tmp_path, clock):
    """Two bot replicas (each its own CHATIR_HOME, state store and outcome log) on one CHATIR_STATE_URL: one
    person's search starts on the first and ends on the second; ``chatir stats``, run elsewhere, sees it all."""
    replicas = []
    for name in ("a", "b"):
        settings = Settings(home=tmp_path / name, top_k=5, max_rounds=10, state_url=postgres_url)
        replicas.append(make_engine(settings, OutcomeLog(open_outcome_database(settings), clock=clock)))
    first, second = replicas
    shown = first.handle("slack:T:C:9.9", "a shape", SCOPE)
    second.choose("slack:T:C:9.9", shown.hits[1].id)  # the next event went to the other replica
    second.handle("web:w", "a shape", SCOPE)
    first.restart("web:w")
    second.handle("cli:c", "a shape", SCOPE)
    assert not list((tmp_path / "a").glob("outcomes.sqlite*")) and not list(
        (tmp_path / "b").glob("outcomes*")
    )

    env = {**os.environ, "CHATIR_HOME": str(tmp_path / "stats"), "PYTHONPATH": str(ROOT)}
    env["CHATIR_STATE_URL"] = postgres_url
    command = [sys.executable, "-m", "frontends.main", "stats", "--since", "3650d", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = {row["group"]: row for row in json.loads(done.stdout)}
    overall = figures["all"]
    assert (overall["ended"], overall["open"], overall["counts"]["found"]) == (2, 1, 1)
    assert overall["counts"]["started_over"] == 1 and overall["rank_mean"] == 2
    assert figures["front-end: slack"]["success_rate"] == 1 and figures["front-end: web"]["success_rate"] == 0
    assert figures["front-end: terminal"]["open"] == 1
    for engine in replicas:
        engine.close()


def test_a_database_outage_costs_no_turn_and_the_log_resumes(postgres_server, postgres_url, tmp_path):
    """The log's database goes down (the conversation state here is SQLite): turns still succeed, nothing is
    half-written, ``chatir stats`` says so in one sentence without the password, and recording resumes."""
    from agent.outcome_db import PostgresOutcomeDatabase

    settings = Settings(home=tmp_path, top_k=5, max_rounds=10)
    log = OutcomeLog(PostgresOutcomeDatabase(postgres_url, connect_timeout_s=2))
    engine = make_engine(settings, log)
    engine.handle("web:before", "a shape", SCOPE)
    postgres_server.halt()
    try:
        during = engine.handle("web:during", "a shape", SCOPE)
        assert during.hits and during.action == "started"
        env = {
            **os.environ,
            "CHATIR_HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            "CHATIR_STATE_URL": postgres_url,
        }
        down = subprocess.run(
            [sys.executable, "-m", "frontends.main", "stats"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (
            down.returncode == 1
            and "outcome-log database" in down.stderr
            and "cannot be reached" in down.stderr
        )
        assert postgres_server.password not in down.stderr + down.stdout
    finally:
        postgres_server.resume()
    engine.choose("web:before", engine.current("web:before").hits[0].id)
    engine.handle("web:after", "a shape", SCOPE)
    assert [(s.outcome, s.found_rank) for s in log.searches()] == [("found", 1), (None, None)]
    engine.close()


def test_a_turn_racing_the_idle_closing_on_another_replica_reopens_its_search(postgres_url, tmp_path, clock):
    """PostgreSQL: another replica's ``close_idle`` has just marked the search abandoned (not committed yet) when
    the person's next turn arrives. The turn waits for it, then sees the abandonment and undoes it (as after
    any timeout), rather than updating a search that stays abandoned."""
    import psycopg

    log = OutcomeLog(open_outcome_database(Settings(home=tmp_path, state_url=postgres_url)), clock=clock)
    log.record("web:late", "started", rounds=0, questioner="info_gain")
    clock.now += 3600
    with psycopg.connect(postgres_url) as other:  # a transaction, like the other replica's close_idle()
        other.execute(
            "UPDATE chatir_outcomes SET outcome = 'abandoned', ended_at = last_at WHERE outcome IS NULL"
        )
        turn = threading.Thread(
            target=log.record, args=("web:late", "answered"), kwargs={"rounds": 1, "questioner": "info_gain"}
        )
        turn.start()
        turn.join(timeout=1.0)
        assert turn.is_alive()  # held until the other transaction ends
    turn.join(timeout=30)
    assert [(s.outcome, s.rounds, s.last_action) for s in log.searches()] == [(None, 1, "answered")]
    log.close()
