"""The light installs hold: a fresh venv with only ``[tools]`` runs docs/tools.md's example, and one with only
``[slack,web]`` runs a chat turn -- both against a real retriever service, neither with torch.

Each test builds its venv from this checkout with pip (the package index must be reachable: skipped
otherwise). Slow (about a minute each), so marked ``slow``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from PIL import Image

from chatir.schemas import PUBLIC, IndexRequest
from chatir.settings import Settings
from tests.conftest import REPO_ROOT
from tests.test_tools_support import live_server

pytestmark = pytest.mark.slow

API_KEY = "light-key"


def _pip(python: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def index_reachable(tmp_path_factory) -> None:
    probe = _pip(
        Path(sys.executable),
        "download",
        "--no-deps",
        "-d",
        str(tmp_path_factory.mktemp("probe")),
        "tenacity",
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"no package index reachable: {probe.stderr.strip()[-200:]}")


def _source_copy(folder: Path) -> Path:
    """The distribution's sources (what the Dockerfile copies), so that building it leaves the checkout alone."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = {
        pattern.rstrip("*") for pattern in config["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, folder / name)
    for package in packages:
        shutil.copytree(REPO_ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _venv_with(extras: str, folder: Path) -> Path:
    """A fresh venv (no system packages) with this checkout installed as ``chatir-slack[extras]``."""
    venv.EnvBuilder(with_pip=True, clear=True).create(folder / "venv")
    python = folder / "venv" / "bin" / "python"
    (folder / "src").mkdir()
    source = _source_copy((folder / "src").resolve())
    installed = _pip(python, "install", f"{source}[{extras}]")
    assert installed.returncode == 0, installed.stderr[-3000:]
    for heavy in ("torch", "transformers", "qdrant_client", "matplotlib"):
        probe = subprocess.run([str(python), "-c", f"import {heavy}"], capture_output=True, check=False)
        assert probe.returncode != 0, f"[{extras}] pulled in {heavy}"
    return python


def _run(python: Path, code: str, url: str, home: Path) -> str:
    env = {
        "PATH": f"{python.parent}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "CHATIR_HOME": str(home),
        "CHATIR_SERVICE_URL": url,
        "CHATIR_API_KEY": API_KEY,
    }
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, env=env, cwd=home, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def service(tiny_clip_dir, tmp_path_factory):
    """A real retriever service (tiny CLIP) with four public images, over HTTP."""
    from retriever_service.api import create_app
    from retriever_service.service import RetrieverService

    home = tmp_path_factory.mktemp("light-service")
    settings = Settings(model=str(tiny_clip_dir), home=home, device="cpu", qdrant_url=None, api_key=API_KEY)
    folder = home / "images"
    folder.mkdir()
    for name, colour in {
        "red": (220, 30, 30),
        "green": (30, 200, 60),
        "blue": (40, 90, 230),
        "yellow": (240, 230, 20),
    }.items():
        Image.new("RGB", (40, 30), colour).save(folder / f"{name}.png")
    with RetrieverService.open(settings) as opened:
        opened.run_index(IndexRequest(paths=[str(folder)], source="light", allowed=[PUBLIC]), progress=False)
        with live_server(create_app(settings, opened)) as url:
            yield url


def test_the_tool_extra_alone_runs_the_docs_example(index_reachable, service, tmp_path):
    python = _venv_with("tools", tmp_path)
    section = (REPO_ROOT / "docs" / "tools.md").read_text().split("## Offline, without an LLM", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    printed = _run(python, code, service, tmp_path).splitlines()
    assert "image" in printed[0].lower()
    assert len(eval(printed[-1])) == 3  # the agent loop's three hits


def test_the_chat_extras_run_a_turn_without_a_model(index_reachable, service, tmp_path):
    python = _venv_with("slack,web", tmp_path)
    code = """
from agent.factory import build_engine
from chatir.settings import Settings
import frontends.slack.app, frontends.web.app  # both chat front-ends import without torch

engine = build_engine(Settings(questioner="info_gain", question_bank="generic"))
engine.questioner.warm_up()  # the bank's answers, embedded by the service's model over HTTP
turn = engine.handle("c1", "a red picture")
print(len(turn.hits), engine.questioner.scorer.encoder.model_id)
"""
    hits, model = _run(python, code, service, tmp_path).split()
    assert hits == "4" and model.endswith("clip")
    helped = subprocess.run(
        [str(python.parent / "chatir"), "slack", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": str(python.parent), "HOME": str(tmp_path)},
        check=False,
    )
    assert helped.returncode == 0, helped.stderr[-2000:]
