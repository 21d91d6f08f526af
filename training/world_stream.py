"""An endless stream of training batches drawn from the procedural world, rendered on the fly.

The world is unlimited, so no image needs to repeat: every batch holds fresh scenes of the training seed (never
the validation or test seeds), each with a partial dialog D_i (i uniform in 0..10) and its target image, plus
near-miss negatives (:func:`world.perturb.perturb`) that the dialog rules out. Texts get the paraphrase
layer (:mod:`world.paraphrase`): free descriptions instead of template captions, reworded answers,
"I don't know" rounds, and ChatIR's caption masking.

A batch (:class:`WorldBatch`) is built entirely in a worker process (scene sampling, dialog, oracle,
rendering, tokenising), so a ``DataLoader`` with many workers keeps a GPU fed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from chatir.dialog import Round
from world.attributes import scene_attributes
from world.dialogs import make_dialog
from world.language import Caption, make_caption
from world.paraphrase import free_description, idk_answer, reword
from world.perturb import IDK, consistent, perturb
from world.render import render_scene
from world.scene import Scene, sample_scene

MAX_RANDOM_TRIES = 50
"""A caption that fits most scenes ("a shape") rules out few: after this many draws take any scene."""
SCENES_PER_SEED = 2**40
"""Scene indices are drawn from this range: in practice no training scene repeats."""


class StreamConfig(BaseModel):
    """What a training batch looks like (saved with the spec)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(256, ge=2, description="dialogs (and target images) per batch")
    hard_negatives: int = Field(2, ge=0, description="near misses per target, ruled out by its dialog")
    image_size: int = Field(96, ge=16)
    low_res: float = Field(0.15, ge=0, le=1, description="share of images drawn at 64 px and scaled up")
    max_rounds: int = Field(10, ge=0)
    free_descriptions: float = Field(0.4, ge=0, le=1, description="captions in the paraphrase layer's words")
    reword_caption: float = Field(0.3, ge=0, le=1, description="template captions reworded")
    reword_answer: float = Field(0.3, ge=0, le=1, description="answers reworded")
    idk: float = Field(0.04, ge=0, le=1, description="rounds answered 'I don't know'")
    mask_caption: float = Field(0.2, ge=0, le=1, description="ChatIR's caption masking (only when i > 0)")
    round_alone: float = Field(0.05, ge=0, le=1, description="texts that are one 'question answer' round")
    max_text_tokens: int = Field(256, ge=16)


@dataclass
class WorldBatch:
    """Tokenised texts, uint8 images (targets first, then negatives) and the targets' attributes."""

    tokens: dict[str, torch.Tensor]
    images: torch.Tensor  # (B * (1 + hard_negatives), 3, S, S) uint8
    attributes: torch.Tensor  # (B * (1 + hard_negatives), n_attributes) float32
    texts: list[str]

    def pin_memory(self) -> WorldBatch:
        return WorldBatch(
            {k: v.pin_memory() for k, v in self.tokens.items()},
            self.images.pin_memory(),
            self.attributes.pin_memory(),
            self.texts,
        )


def _image(scene: Scene, config: StreamConfig, rng: random.Random) -> np.ndarray:
    from PIL import Image

    if config.low_res and rng.random() < config.low_res:
        image = render_scene(scene, 64).resize((config.image_size,) * 2, Image.Resampling.BICUBIC)
    else:
        image = render_scene(scene, config.image_size)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def sample_example(seed: int, config: StreamConfig, rng: random.Random) -> tuple[str, Scene, list[Scene]]:
    """One training text, its target scene and its near-miss negatives."""
    scene = sample_scene(seed, rng.randrange(SCENES_PER_SEED))
    free = rng.random() < config.free_descriptions
    caption: Caption = free_description(scene, rng) if free else make_caption(scene, rng)
    rounds = rng.randint(0, config.max_rounds)
    dialog = make_dialog(scene, caption.text, rng, rounds=rounds)
    facts: list[tuple[str, str]] = []
    parts: list[str] = []
    for r in dialog.rounds:
        if rng.random() < config.idk:
            facts.append((r.question, IDK))
            parts.append(Round(question=r.question, answer=idk_answer(rng)).text())
            continue
        facts.append((r.question, r.answer))
        answer = reword(r.answer, rng) if rng.random() < config.reword_answer else r.answer
        parts.append(Round(question=r.question, answer=answer).text())
    caption_text = caption.text
    if not free and rng.random() < config.reword_caption:
        caption_text = reword(caption_text, rng, rate=0.4)
    kept_caption: Caption | None = caption
    informative = [k for k, (_, answer) in enumerate(facts) if answer != IDK]
    if informative and rng.random() < config.round_alone:
        k = rng.choice(informative)
        text_parts = [parts[k]]
        facts = [facts[k]]
        kept_caption = None
    elif informative and rng.random() < config.mask_caption:
        text_parts = parts
        kept_caption = None
    else:
        text_parts = [caption_text, *parts]
    negatives = [_near_miss(seed, scene, kept_caption, facts, rng) for _ in range(config.hard_negatives)]
    return ", ".join(text_parts), scene, negatives


def _near_miss(
    seed: int, scene: Scene, caption: Caption | None, facts: list[tuple[str, str]], rng: random.Random
) -> Scene:
    """A one-change variant of ``scene`` that the dialog rules out; else a random scene it rules out; else
    (a dialog that fits almost anything) any random scene."""
    for _try in range(8):
        candidate = perturb(scene, rng)
        if not consistent(candidate, caption, facts):
            return candidate
    for _try in range(MAX_RANDOM_TRIES):
        candidate = sample_scene(seed, rng.randrange(SCENES_PER_SEED))
        if not consistent(candidate, caption, facts):
            return candidate
    return candidate


def make_batch(seed: int, config: StreamConfig, rng: random.Random, tokenizer) -> WorldBatch:
    texts, targets, negatives = [], [], []
    for _ in range(config.batch_size):
        text, scene, near = sample_example(seed, config, rng)
        texts.append(text)
        targets.append(scene)
        negatives.extend(near)
    scenes = targets + negatives
    images = torch.from_numpy(np.stack([_image(s, config, rng) for s in scenes]))
    attributes = torch.from_numpy(np.stack([scene_attributes(s) for s in scenes]))
    tokens = tokenizer(
        texts, padding="longest", truncation=True, max_length=config.max_text_tokens, return_tensors="pt"
    )
    return WorldBatch(dict(tokens), images, attributes, texts)


class WorldBatchStream(torch.utils.data.IterableDataset):
    """Endless :class:`WorldBatch` es; worker ``w`` of ``n`` builds batches ``start + w, start + w + n, ...``.

    Batch ``k`` is a pure function of (``seed``, ``k``), so a resumed run continues with new batches.
    """

    def __init__(self, world_seed: int, config: StreamConfig, tokenizer, *, start: int = 0, seed: int = 0):
        super().__init__()
        self.world_seed = world_seed
        self.config = config
        self.tokenizer = tokenizer
        self.start = start
        self.seed = seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        k = self.start + worker
        while True:
            rng = random.Random(f"chatir-stream/{self.seed}/{k}")
            yield make_batch(self.world_seed, self.config, rng, self.tokenizer)
            k += workers
