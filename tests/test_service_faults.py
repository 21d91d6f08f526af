"""Faults and load against real processes (issue #13): `chatir serve` killed with SIGKILL in the middle of an
indexing job and in the middle of a chat, then started again; and a bounded load run (concurrent
conversations) whose only assertions are zero errors and bounded memory -- its timings go to
docs/reliability.md, never into an assertion."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from agent.engine import ConversationEngine
from agent.questioners import RandomQuestioner
from agent.state import ConversationStore
from chatir.errors import ServiceUnavailableError
from chatir.settings import Settings
from tests.conftest import REPO_ROOT
from tools.scope import SearchScope

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from load import run_load, started_service


def _images(folder: Path, n: int, size: int = 48) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:04d}.png")
        paths.append(folder / f"img{i:04d}.png")
    return paths


@pytest.fixture
def service_env(tiny_clip_dir, tmp_path) -> dict[str, str]:
    env = {
        "CHATIR_HOME": str(tmp_path / "home"),
        "CHATIR_MODEL": str(tiny_clip_dir),
        "CHATIR_DEVICE": "cpu",
        "CHATIR_INDEX_ROOTS": str(tmp_path),
        "CHATIR_BATCH_SIZE": "4",
    }
    for name in (
        "CHATIR_API_KEY",
        "QDRANT_URL",
        "CHATIR_QDRANT_URL",
        "CHATIR_COLLECTION",
        "CHATIR_SERVICE_URL",
    ):
        os.environ.pop(name, None)
    return env


def _wait(client: httpx.Client, job_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/index/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_service_killed_mid_index_resumes_and_loses_nothing(service_env, tmp_path):
    files = _images(tmp_path / "photos", 300, size=256)
    with started_service(service_env) as (url, pid), httpx.Client(base_url=url, timeout=30) as client:
        job = client.post("/v1/index", json={"paths": [str(tmp_path / "photos")]}).json()
        deadline = time.monotonic() + 60
        while client.get(f"/v1/index/jobs/{job['id']}").json().get("done", 0) < 4:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)  # mid-batch: no clean shutdown, no chance to flush anything
    # the same store opens again after a kill
    with started_service(service_env) as (url, _pid), httpx.Client(base_url=url, timeout=30) as client:
        count_after_kill = client.get("/readyz").json().get("images")
        job = _wait(client, client.post("/v1/index", json={"paths": [str(tmp_path / "photos")]}).json()["id"])
        assert job["state"] == "done", job
        # what was stored before the kill is kept (unchanged), the rest is added: every file once
        assert job["added"] + job["unchanged"] == len(files), job
        assert job["added"] > 0, "the kill came after the job had finished: nothing was interrupted"
        assert client.get("/readyz").json()["images"] == len(files)
        assert count_after_kill is None or count_after_kill == job["unchanged"]


def test_a_service_killed_mid_chat_costs_the_user_nothing(service_env, tmp_path):
    settings = Settings(_env_file=None, home=tmp_path / "bot-home", service_url="http://127.0.0.1:1")
    _images(tmp_path / "photos", 12)
    with started_service(service_env) as (url, pid):
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait(client, client.post("/v1/index", json={"paths": [str(tmp_path / "photos")]}).json()["id"])
        from agent.search import ServiceSearcher
        from tools.client import RetrieverClient

        def engine_for(service_url: str) -> ConversationEngine:
            client = RetrieverClient(service_url, timeout=5.0, retries=0)
            return ConversationEngine(ServiceSearcher(client), RandomQuestioner(seed=3),
                                      ConversationStore(settings.state_db), settings)  # fmt: skip

        engine = engine_for(url)
        first = engine.handle("chat:1", "a noisy picture", SearchScope.unrestricted())
        assert first.hits and first.question
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ServiceUnavailableError):
            engine.handle("chat:1", "yes")
        kept = engine.get("chat:1")
        assert kept.dialog.rounds == [] and kept.pending_question == first.question  # the turn left no trace
    with started_service(service_env) as (url, _pid):
        again = engine_for(url).handle("chat:1", "yes")  # the same answer, once the service is back
    assert again.round == 1 and again.dialog.rounds[0].answer == "yes" and again.hits


def test_concurrent_conversations_get_answers_and_memory_stays_flat(service_env, tmp_path):
    _images(tmp_path / "photos", 40)
    with started_service(service_env) as (url, pid):
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait(client, client.post("/v1/index", json={"paths": [str(tmp_path / "photos")]}).json()["id"])
        figures = run_load(url, conversations=20, searches=5, pid=pid)
        light = run_load(
            url, conversations=20, searches=5, client="async"
        )  # the light generator, same service
    assert figures["requests"] == 100 and figures["errors"] == 0, figures
    assert light["requests"] == 100 and light["errors"] == 0 and light["p95_ms"] > 0, light
    if figures["rss_growth_mb"] is not None:  # /proc is there on Linux
        assert figures["rss_growth_mb"] < 100, figures
