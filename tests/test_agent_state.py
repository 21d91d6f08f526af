"""Conversation state: the same tests against both backends (SQLite, and a real PostgreSQL server).

Compare-and-swap, durability across store instances ("processes"), damaged rows set aside, threads of one
engine, and two real engine processes racing on one conversation (no round lost or duplicated).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import (
    ConcurrentUpdateError,
    ConversationEngine,
    ConversationState,
    ConversationStore,
    open_state_store,
)
from agent.questioners import InfoGainQuestioner, ModelCandidateScorer
from chatir.dialog import Dialog
from chatir.errors import ChatIRError
from chatir.settings import Settings
from tests.test_agent_support import TOY_BANK, KeywordModel, toy_searcher
from tools.scope import SearchScope

REPO_ROOT = Path(__file__).resolve().parents[1]
TEAM = SearchScope(allowed=["C-TEAM", "public"])


@dataclass
class Backend:
    """One state backend under test: its settings and a way to damage a stored row behind the store's back."""

    name: str
    settings: Settings

    def open(self):
        return open_state_store(self.settings)

    def write_raw(self, conversation_id: str, text: str) -> None:
        if self.name == "sqlite":
            with sqlite3.connect(self.settings.state_db) as db:
                db.execute("UPDATE conversations SET state = ? WHERE id = ?", (text, conversation_id))
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute("UPDATE chatir_conversations SET state = %s WHERE id = %s", (text, conversation_id))

    @property
    def url(self) -> str:
        return self.settings.state_url.get_secret_value() if self.settings.state_url else ""

    def read_raw(self, conversation_id: str) -> str:
        if self.name == "sqlite":
            with sqlite3.connect(self.settings.state_db) as db:
                return db.execute(
                    "SELECT state FROM conversations WHERE id = ?", (conversation_id,)
                ).fetchone()[0]
        import psycopg

        with psycopg.connect(self.url) as db:
            row = db.execute(
                "SELECT state FROM chatir_conversations WHERE id = %s", (conversation_id,)
            ).fetchone()
            assert row is not None
            return str(row[0])


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> Backend:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Backend(request.param, Settings(home=tmp_path, top_k=5, max_rounds=10, state_url=url))


def make_engine(backend: Backend, store=None) -> ConversationEngine:
    model = KeywordModel()
    searcher = toy_searcher(model)
    questioner = InfoGainQuestioner(ModelCandidateScorer(model, searcher), TOY_BANK)
    return ConversationEngine(searcher, questioner, store or backend.open(), backend.settings)


# --- the store alone ---------------------------------------------------------------------------------
def test_the_backend_is_the_one_the_settings_name(backend):
    with backend.open() as store:
        expected = "ConversationStore" if backend.name == "sqlite" else "PostgresConversationStore"
        assert type(store).__name__ == expected


def test_save_is_compare_and_swap(backend):
    with backend.open() as one, backend.open() as two:
        assert one.get("c") is None and one.ids() == []
        first = one.save(ConversationState(conversation_id="c", dialog=Dialog(caption="a red star")))
        assert first.version == 1 and two.get("c") == first
        # a second writer of a new conversation loses: version 0 means "not stored yet"
        with pytest.raises(ConcurrentUpdateError, match="send your message again"):
            two.save(ConversationState(conversation_id="c", dialog=Dialog(caption="a blue circle")))
        stale = two.get("c")
        assert stale is not None
        second = one.save(first.model_copy(update={"status": "showing"}))
        assert second.version == 2
        with pytest.raises(ConcurrentUpdateError):
            two.save(stale)
        assert two.get("c").status == "showing" and two.get("c").dialog.caption == "a red star"
        # a deleted conversation cannot be resurrected by a stale write either
        assert two.delete("c") and not two.delete("c")
        with pytest.raises(ConcurrentUpdateError):
            one.save(second)
        assert one.get("c") is None and one.ids() == []


def test_ids_in_order_of_last_change_and_state_survives_reopening(backend):
    with backend.open() as store:
        for cid in ("a", "b", "c"):
            store.save(ConversationState(conversation_id=cid, scope=TEAM))
        store.save(store.get("a"))
        assert store.ids() == ["b", "c", "a"]
    with backend.open() as reopened:
        again = reopened.get("b")
        assert again is not None and again.scope == TEAM and again.version == 1
        assert reopened.get("a").version == 2


# --- through the engine (moved here from test_agent_engine.py, now for both backends) ---------------------
def test_concurrent_messages_to_one_conversation_are_both_recorded(backend):
    engine = make_engine(backend)
    engine.handle("c", "a shape", TEAM)
    errors = []

    def send(text):
        try:
            engine.handle("c", text)
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=send, args=(t,)) for t in ("blue", "circle")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.answer for r in engine.get("c").dialog.rounds) == ["blue", "circle"]
    engine.close()


def test_the_store_refuses_a_stale_write(backend):
    engine = make_engine(backend)
    engine.handle("c", "a shape", TEAM)
    other_process = backend.open()
    stale = other_process.get("c")
    engine.handle("c", "blue")
    with pytest.raises(ConcurrentUpdateError, match="send your message again"):
        other_process.save(stale)
    assert other_process.ids() == ["c"] and other_process.delete("c") and engine.get("c") is None
    other_process.close()
    engine.close()


def test_another_engine_continues_the_conversation(backend):
    first = make_engine(backend)
    started = first.handle("c", "a red shape", TEAM)
    first.close()
    second = make_engine(backend)  # another replica, another store instance
    answered = second.handle("c", "a circle")
    assert answered.round == 1 and answered.dialog.rounds[0].question == started.question
    assert answered.scope == TEAM
    second.close()


def test_a_damaged_conversation_is_set_aside_and_the_user_told_once(backend):
    """#13.4: a truncated state row no longer breaks get/handle/restart; it is kept for inspection."""
    engine = make_engine(backend)
    engine.handle("c-bad", "a red circle", TEAM)
    state = backend.read_raw("c-bad")
    backend.write_raw("c-bad", state[: len(state) // 2])
    result = engine.handle("c-bad", "a blue square", TEAM)
    assert result.message and "damaged" in result.message and result.dialog.caption == "a blue square"
    assert "damaged" not in (engine.handle("c-bad", "no").message or "")  # told once
    assert [cid for cid, _ in engine.store.quarantined()] == ["c-bad"]
    # "start over" on a damaged conversation recovers it too
    backend.write_raw("c-bad", '{"conversation')
    restarted = engine.restart("c-bad")
    assert "damaged" in restarted.message and restarted.state == "awaiting_description"
    assert len(engine.store.quarantined()) == 2
    engine.close()


# --- two real engine processes -----------------------------------------------------------------------------
def test_two_engine_processes_racing_on_one_conversation_lose_and_duplicate_nothing(backend, tmp_path):
    """Two bot replicas (separate processes, stores from CHATIR_STATE_URL) answer one conversation at once;
    a turn that loses the compare-and-swap is refused and sent again, as the user is told to do. Every
    answer ends up in the dialog exactly once and the version counts every write."""
    url = backend.url or f"sqlite:///{backend.settings.state_db}"
    starter = make_engine(backend)
    starter.handle("race", "a red shape", TEAM)
    starter.close()
    count = 12
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.state_race_worker",
                url,
                str(tmp_path),
                "race",
                name,
                str(count),
                "0.01",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p0", "p1")
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = [
            json.loads(worker.communicate(timeout=180)[0].strip().splitlines()[-1]) for worker in workers
        ]
    finally:
        for worker in workers:
            worker.kill() if worker.poll() is None else None
    assert [w.returncode for w in workers] == [0, 0]
    sent = [f"the sky was {name}-{i}" for name in ("p0", "p1") for i in range(count)]
    assert sorted(text for report in reports for text in report["recorded"]) == sorted(sent)
    with backend.open() as store:
        final = store.get("race")
    assert final is not None and final.dialog is not None
    answers = [r.answer for r in final.dialog.rounds]
    assert Counter(answers) == Counter(sent)  # none lost, none twice
    for name in ("p0", "p1"):  # each process's answers in the order it sent them
        assert [a for a in answers if f" {name}-" in a] == [f"the sky was {name}-{i}" for i in range(count)]
    assert final.version == 1 + len(sent)  # one write per turn, nothing overwritten
    assert sum(report["conflicts"] for report in reports) > 0, (
        "the processes never raced: the test proves nothing"
    )


# --- configuration -------------------------------------------------------------------------------------
def test_a_state_url_of_an_unknown_kind_is_refused_without_echoing_it(tmp_path):
    settings = Settings(home=tmp_path, state_url="mysql://root:hunter2@db/chatir")
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.model_dump_json()
    with pytest.raises(ChatIRError, match="CHATIR_STATE_URL must start with one of") as caught:
        open_state_store(settings)
    assert "hunter2" not in str(caught.value) and "'mysql'" in str(caught.value)


def test_an_unreachable_database_is_a_clear_error_without_the_password():
    pytest.importorskip("psycopg")
    from agent.state_postgres import PostgresConversationStore, StateStoreUnavailableError
    from tests.postgres_server import _free_port

    url = f"postgresql://bot:s3cret-pw@127.0.0.1:{_free_port()}/chatir"
    with pytest.raises(StateStoreUnavailableError, match="cannot be reached") as caught:
        PostgresConversationStore(url, connect_timeout_s=1)
    assert "s3cret-pw" not in str(caught.value) and "bot@127.0.0.1" in str(caught.value)


def test_a_sqlite_url_names_another_file(tmp_path):
    store = open_state_store(Settings(home=tmp_path, state_url=f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"))
    assert isinstance(store, ConversationStore) and store.path == tmp_path / "elsewhere.sqlite"
    store.close()


def test_a_database_crash_costs_a_clear_error_and_nothing_saved(postgres_server, postgres_url, tmp_path):
    """PostgreSQL killed mid-conversation (immediate shutdown): a turn fails with one sentence naming the
    database (no password), nothing saved is lost, and the same engine goes on once the server is back."""
    from agent.state_postgres import PostgresConversationStore, StateStoreUnavailableError

    settings = Settings(home=tmp_path, top_k=5, state_url=postgres_url)
    store = PostgresConversationStore(postgres_url, connect_timeout_s=2)
    engine = make_engine(Backend("postgres", settings), store)
    engine.handle("c", "a red shape", TEAM)
    engine.handle("c", "blue")
    postgres_server.halt()
    try:
        with pytest.raises(StateStoreUnavailableError, match="cannot be reached") as caught:
            engine.handle("c", "a circle")
        assert postgres_server.password not in str(caught.value) and "Nothing was recorded" in str(
            caught.value
        )
    finally:
        postgres_server.resume()
    again = engine.handle("c", "a circle")  # the pool replaced its dead connections
    assert [r.answer for r in again.dialog.rounds] == ["blue", "a circle"] and engine.get("c").version == 3
    engine.close()
