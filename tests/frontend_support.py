"""Helpers of the front-end tests (web chat, terminal chat, demo): settings and a small question bank."""

from __future__ import annotations

from pathlib import Path

from chatir.settings import Settings


def frontend_settings(model: str | Path, home: Path, **overrides) -> Settings:
    """Settings for a test: the given model on CPU, embedded store under ``home``, no LLM, no .env."""
    values = {
        "model": str(model),
        "home": home,
        "device": "cpu",
        "qdrant_url": None,
        "api_key": None,
        "llm_model": None,
        "llm_base_url": None,
        "llm_api_key": None,
        "service_timeout_s": 10.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def small_world_bank(n: int = 24):
    """``n`` questions spread over the world's bank (the whole bank costs seconds to embed with tiny models)."""
    from agent.questioners.bank import QuestionBank, world_bank

    questions = world_bank().questions
    step = max(1, len(questions) // n)
    return QuestionBank(name="world-small", questions=questions[::step][:n])
