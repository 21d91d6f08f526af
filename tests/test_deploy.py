"""The deployment kit (deploy/compose.yaml, deploy/docker/Dockerfile, deploy/env.example) agrees with the code.

No docker engine runs here, so these check what can drift silently: every variable the containers get is one
the settings read, every command they run exists, the image copies every package the project installs.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chatir.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _settings_env_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(choice for choice in getattr(alias, "choices", []) if isinstance(choice, str))
    return names


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_containers_get_only_variables_the_settings_read(compose):
    known = _settings_env_names()
    for name, service in compose["services"].items():
        if name == "qdrant":
            continue  # Qdrant's own QDRANT__* variables
        unknown = set(service.get("environment", {})) - known
        assert not unknown, f"{name}: {unknown} are not read by chatir.settings.Settings"


def test_env_example_feeds_the_compose_file(compose):
    text = (DEPLOY / "compose.yaml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = (DEPLOY / "env.example").read_text()
    keys = {line.lstrip("# ").split("=", 1)[0] for line in example.splitlines() if "=" in line}
    assert keys <= referenced, keys - referenced
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    uncommented = {
        line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")
    }
    assert required <= uncommented, f"required by compose but not in env.example: {required - uncommented}"


def test_container_commands_exist(compose):
    from frontends.main import app

    runner = CliRunner()
    commands = [service["command"] for service in compose["services"].values() if "command" in service]
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    commands.append(yaml.safe_load(re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE).group(1)))
    assert len(commands) == 3
    for command in commands:
        assert command[0] == "chatir"
        result = runner.invoke(app, [*command[1:], "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_image_copies_every_installed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in patterns}
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    assert copied == packages
    assert 'TORCH_SPEC="torch==' in dockerfile  # pinned: an unpinned torch pulls GBs of CUDA wheels


def test_empty_variables_count_as_unset(monkeypatch):
    # compose passes optional variables as "" when the .env leaves them out
    monkeypatch.setenv("CHATIR_LLM_MODEL", "")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.setenv("CHATIR_MODEL", "")
    settings = Settings()
    assert settings.llm_model is None and settings.llm_base_url is None
    assert settings.model == "starter"


def test_the_bot_image_has_no_torch(compose):
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    bot = dockerfile.split("FROM source AS bot", 1)[1].split("\nFROM ", 1)[0]
    assert 'pip install ".[slack,web]"' in bot and "torch" not in bot
    assert compose["services"]["slack"]["build"]["target"] == "bot"
    assert "CHATIR_MODEL" not in compose["services"]["slack"]["environment"]  # the bot loads no model


def test_compose_file_follows_the_compose_specification(compose):
    """deploy/compose.yaml against the vendored compose-spec JSON schema (deploy/schemas/README.md): what
    `docker compose config` would refuse is caught here, without a docker engine."""
    import json

    from jsonschema import Draft202012Validator

    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors
    # the schema bites: a misspelt key and a wrong type are refused
    typo = {**compose, "service": compose["services"]}
    assert not validator.is_valid(typo)
    bad_port = {
        **compose,
        "services": {**compose["services"], "qdrant": {**compose["services"]["qdrant"], "ports": 6333}},
    }
    assert not validator.is_valid(bad_port)


def test_production_defaults_name_a_real_model_pulled_into_the_models_volume(compose):
    retriever = compose["services"]["retriever"]
    default = re.fullmatch(r"\$\{CHATIR_MODEL:-(.+)\}", retriever["environment"]["CHATIR_MODEL"]).group(1)
    assert default == "/models/Salesforce/blip-itm-base-coco"
    assert any(volume.startswith("models:/models") for volume in retriever["volumes"])
    assert "models" in compose["volumes"]
    example = (DEPLOY / "env.example").read_text()
    assert "\nCHATIR_MODEL=/models/Salesforce/blip-itm-base-coco\n" in example
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert 'chatir models pull "${CHATIR_BAKE_MODEL}" --to /opt/chatir/model' in dockerfile
    assert "ENV CHATIR_MODEL=${CHATIR_BAKE_MODEL:+/opt/chatir/model}" in dockerfile
    # the documented pull command is one the CLI takes
    from frontends.main import app

    result = CliRunner().invoke(app, ["models", "pull", "--help"])
    assert result.exit_code == 0 and "--to" in result.output
