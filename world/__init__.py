"""The offline world: procedural images with ground truth, captions, an oracle answerer and dialog splits.

Main entry points (imported lazily, so ``import world`` stays cheap):

- :func:`generate_world` / :func:`load_manifest` -- images + manifest on disk (``generator``)
- :func:`sample_scene` / :func:`scene_from_id` / :class:`Scene` -- the ground truth (``scene``)
- :func:`render_scene` -- a scene as a PIL image (``render``)
- :func:`caption_for` / :class:`Caption` -- partial first descriptions (``language``)
- :class:`Oracle` -- answers questions from the ground truth (``oracle``)
- :func:`question_bank` / :func:`possible_answers` -- the questioner's candidates (``questions``)
- :func:`make_splits` / :func:`dialog_for` / :func:`load_dialogs` -- ChatIR-format dialogs (``dialogs``)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate_world": "generator",
    "load_manifest": "generator",
    "manifest_scenes": "generator",
    "read_world_info": "generator",
    "ManifestEntry": "generator",
    "WorldInfo": "generator",
    "WorldError": "generator",
    "Scene": "scene",
    "WorldObject": "scene",
    "sample_scene": "scene",
    "scene_from_id": "scene",
    "image_id": "scene",
    "parse_image_id": "scene",
    "render_scene": "render",
    "Caption": "language",
    "caption_for": "language",
    "make_caption": "language",
    "Oracle": "oracle",
    "question_bank": "questions",
    "possible_answers": "questions",
    "make_dialog": "dialogs",
    "dialog_for": "dialogs",
    "make_splits": "dialogs",
    "load_dialogs": "dialogs",
    "split_seed": "dialogs",
    "caption_match_counts": "stats",
}

__all__ = [
    "Caption",
    "ManifestEntry",
    "Oracle",
    "Scene",
    "WorldError",
    "WorldInfo",
    "WorldObject",
    "caption_for",
    "caption_match_counts",
    "dialog_for",
    "generate_world",
    "image_id",
    "load_dialogs",
    "load_manifest",
    "make_caption",
    "make_dialog",
    "make_splits",
    "manifest_scenes",
    "parse_image_id",
    "possible_answers",
    "question_bank",
    "read_world_info",
    "render_scene",
    "sample_scene",
    "scene_from_id",
    "split_seed",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"world.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'world' has no attribute {name!r}")
