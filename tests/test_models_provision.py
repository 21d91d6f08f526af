"""``chatir models pull|check``: pulled from a local server that speaks the hub's protocol (tests/fakes/hf_hub.py),
checked through the real loader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.hf_hub import FakeHub

REPO = "acme/tiny-clip"


def _chatir(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frontends.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def hub_env(tmp_path, tiny_clip_dir):
    with FakeHub() as hub:
        hub.add_repo(REPO, tiny_clip_dir)
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf"),
            "CHATIR_HOME": str(tmp_path / "home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        env.pop("TRANSFORMERS_OFFLINE", None)
        yield hub, env


def test_pull_to_a_folder_then_check_reports_the_model(hub_env, tmp_path, tiny_clip_dir):
    from retriever_service.models.provision import weights_checksum

    hub, env = hub_env
    target = tmp_path / "models" / "clip"
    result = _chatir(["models", "pull", REPO, "--to", str(target)], env)
    assert result.returncode == 0, result.stderr
    assert (target / "model.safetensors").read_bytes() == (tiny_clip_dir / "model.safetensors").read_bytes()
    expected, _, _ = weights_checksum(tiny_clip_dir)
    assert "family:      clip" in result.stdout
    assert "dimension:   16" in result.stdout
    assert "text window: 77 tokens" in result.stdout
    assert f"checksum:    {expected}" in result.stdout
    assert f"CHATIR_MODEL={target}" in result.stdout
    assert "Fetching 5 files" in result.stderr  # huggingface_hub's progress
    assert sorted(hub.downloaded()) == sorted(p.name for p in tiny_clip_dir.iterdir() if p.is_file())

    again = _chatir(["models", "pull", REPO, "--to", str(target), "--no-check"], env)
    assert again.returncode == 0, again.stderr
    assert hub.downloaded().count("model.safetensors") == 1  # nothing fetched twice


def test_pull_into_the_cache_serves_the_hub_id_offline(hub_env):
    from chatir.settings import Settings
    from retriever_service.models import load_model

    _hub, env = hub_env
    result = _chatir(["models", "pull", REPO, "--no-check"], env)
    assert result.returncode == 0, result.stderr
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    checked = _chatir(["models", "check", REPO, "--json"], offline)
    assert checked.returncode == 0, checked.stderr
    assert '"family": "clip"' in checked.stdout
    # the service's own loader finds it by hub id in that cache, without network
    code = (
        "from chatir.settings import Settings; from retriever_service.models import load_model; "
        f"m = load_model({REPO!r}, device='cpu', settings=Settings()); print(m.model_id, m.dim)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], env=offline, capture_output=True, text=True, timeout=240
    )
    assert loaded.stdout.strip() == f"{REPO} 16", loaded.stderr
    del Settings, load_model


def test_pull_errors_are_clear(hub_env):
    _hub, env = hub_env
    missing = _chatir(["models", "pull", "acme/no-such-model"], env)
    assert missing.returncode == 1
    assert "has no model 'acme/no-such-model'" in missing.stderr
    assert "Traceback" not in missing.stderr
    offline = _chatir(["models", "pull", REPO], {**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1
    assert "HF_HUB_OFFLINE=1" in offline.stderr


def test_check_reports_starter_and_refuses_a_folder_without_weights(tmp_path, tiny_clip_dir):
    from chatir.errors import ModelNotAvailableError
    from chatir.settings import Settings
    from retriever_service.models.provision import check_model, weights_checksum

    settings = Settings(home=tmp_path / "home")
    report = check_model(str(tiny_clip_dir), settings=settings)
    assert (report.family, report.dim, report.max_text_tokens) == ("clip", 16, 77)
    assert report.checksum == weights_checksum(tiny_clip_dir)[0]

    changed = tmp_path / "changed"
    shutil.copytree(tiny_clip_dir, changed)
    with (changed / "model.safetensors").open("r+b") as handle:  # one flipped byte near the end
        handle.seek(-3, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-3, os.SEEK_END)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert weights_checksum(changed)[0] != report.checksum

    empty = tmp_path / "no-weights"
    shutil.copytree(tiny_clip_dir, empty, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelNotAvailableError):
        check_model(str(empty), settings=settings)
    with pytest.raises(ModelNotAvailableError, match="chatir models pull"):
        check_model("acme/not-pulled", settings=settings)


def test_starter_check(tmp_path):
    from chatir.settings import Settings
    from retriever_service.models.provision import check_model

    report = check_model("starter", settings=Settings(home=tmp_path / "home"))
    assert report.model == "starter"
    assert report.dim > 0 and report.checksum.startswith("sha256:")
    assert Path(report.weight_files[0]).suffix == ".safetensors"
