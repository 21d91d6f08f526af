"""Training the scene-code vision tower (:mod:`retriever_service.models.scene_code`) on fresh world renders.

Supervision is the world's ground truth, per grid cell (nothing there, or which shape, colour, size and
pattern) and per picture (background, backdrop, dark, framed): cross-entropy for every head, the object
heads only where a cell is occupied. Every step renders a new batch of scenes of the training seed, so no
picture repeats. A share of them is drawn larger and reduced with the image processor's resampling, so the
tower also reads pictures that were rendered at another size than its input.

The run is resumable (``OUT/perception-state.pt`` every few minutes; the learning rate decays over the
steps or the time budget, whichever is further along), logs ``OUT/log.jsonl`` with validation on held-out
scenes, and writes the tower to ``OUT/vision/`` (``save_pretrained``).

Run by ``chatir starter build --recipe scene-code`` (:func:`training.starter.build_starter`).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from retriever_service.models.scene_code import SceneCodeConfig, SceneCodeVisionModel
from training.joint import learning_rate_factor, normalise_pixels
from world.attributes import attribute_names, scene_attributes
from world.dialogs import split_seed
from world.render import render_scene
from world.scene import Scene, sample_scene
from world.vocab import BACKDROPS, BACKGROUNDS, COLOURS, MAX_OBJECTS, PATTERNS, POSITIONS, SHAPES, SIZES

STATE_FILE = "perception-state.pt"
IGNORE = -100


class PerceptionRecipe(BaseModel):
    """Hyper-parameters of the perception run (saved beside its weights)."""

    model_config = ConfigDict(extra="forbid")

    world_seed: int = 7
    image_size: int = Field(96, ge=16)
    widths: tuple[int, ...] = (24, 48, 128)
    cell_hidden: int = 192
    batch_size: int = Field(128, ge=2)
    steps: int = Field(100_000, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)
    larger_render: float = Field(0.2, ge=0, le=1, description="share rendered at 4/3 the size and reduced")
    val_images: int = Field(1000, ge=8)
    val_every: int = Field(200, ge=1)
    log_every: int = Field(25, ge=1)
    checkpoint_every_s: float = Field(180.0, gt=0)
    seed: int = 0


def scene_code_layout(cell_hidden: int = 192) -> dict[str, Any]:
    """The vision tower's world-specific configuration: its vocabulary and attribute code, as data."""
    return dict(
        cell_hidden=cell_hidden,
        shapes=list(SHAPES),
        colours=list(COLOURS),
        sizes=list(SIZES),
        patterns=list(PATTERNS),
        positions=list(POSITIONS),
        backgrounds=list(BACKGROUNDS),
        backdrops=list(BACKDROPS),
        max_objects=MAX_OBJECTS,
        attribute_names=list(attribute_names()),
    )


def scene_code_config(recipe: PerceptionRecipe) -> SceneCodeConfig:
    return SceneCodeConfig(
        image_size=recipe.image_size, widths=recipe.widths, **scene_code_layout(recipe.cell_hidden)
    )


def scene_labels(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Targets of every head for a batch of scenes (object heads: ``IGNORE`` where a cell is empty)."""
    n, cells = len(scenes), len(POSITIONS)
    shape = torch.zeros(n, cells, dtype=torch.long)
    colour = torch.full((n, cells), IGNORE, dtype=torch.long)
    size = torch.full((n, cells), IGNORE, dtype=torch.long)
    pattern = torch.full((n, cells), IGNORE, dtype=torch.long)
    for row, scene in enumerate(scenes):
        for obj in scene.objects:
            cell = POSITIONS.index(obj.position)
            shape[row, cell] = SHAPES.index(obj.shape) + 1
            colour[row, cell] = COLOURS.index(obj.colour)
            size[row, cell] = SIZES.index(obj.size)
            pattern[row, cell] = PATTERNS.index(obj.pattern)
    return {
        "cell_shape": shape,
        "cell_colour": colour,
        "cell_size": size,
        "cell_pattern": pattern,
        "background": torch.tensor([BACKGROUNDS.index(s.background) for s in scenes]),
        "backdrop": torch.tensor([BACKDROPS.index(s.backdrop) for s in scenes]),
        "dark": torch.tensor([float(s.lighting == "dark") for s in scenes]),
        "framed": torch.tensor([float(s.frame) for s in scenes]),
    }


def render_batch(scenes: list[Scene], size: int, larger: float, rng: random.Random) -> torch.Tensor:
    """uint8 (N, 3, size, size); a share ``larger`` drawn at 4/3 the size and reduced (bicubic)."""
    from PIL import Image

    arrays = []
    for scene in scenes:
        if larger and rng.random() < larger:
            image = render_scene(scene, size * 4 // 3).resize((size, size), Image.Resampling.BICUBIC)
        else:
            image = render_scene(scene, size)
        arrays.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


def perception_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = torch.zeros(())
    for key in ("cell_shape", "cell_colour", "cell_size", "cell_pattern"):
        loss = loss + F.cross_entropy(logits[key].flatten(0, 1), labels[key].flatten(), ignore_index=IGNORE)
    loss = loss + F.cross_entropy(logits["background"], labels["background"])
    loss = loss + F.cross_entropy(logits["backdrop"], labels["backdrop"])
    loss = loss + F.binary_cross_entropy_with_logits(logits["dark"], labels["dark"])
    return loss + F.binary_cross_entropy_with_logits(logits["framed"], labels["framed"])


@torch.no_grad()
def evaluate(model: SceneCodeVisionModel, images: torch.Tensor, scenes: list[Scene]) -> dict[str, float]:
    """Head accuracies, the code's binary cross-entropy against the truth, and whole-scene accuracy."""
    was_training = model.training
    model.eval()
    labels = scene_labels(scenes)
    logits, codes = {}, []
    for start in range(0, len(images), 256):
        part = model.heads(normalise_pixels(images[start : start + 256], torch.float32))
        codes.append(model.code_probabilities(part))
        for key, value in part.items():
            logits.setdefault(key, []).append(value)
    merged = {key: torch.cat(values) for key, values in logits.items()}
    code = torch.cat(codes).clamp(1e-6, 1 - 1e-6)
    truth = torch.from_numpy(np.stack([scene_attributes(s) for s in scenes]))
    result = {"code_bce": float(F.binary_cross_entropy(code, truth))}
    right = torch.ones(len(scenes), dtype=torch.bool)
    for key in ("cell_shape", "cell_colour", "cell_size", "cell_pattern"):
        predicted = merged[key].argmax(dim=2)
        mask = labels[key] != IGNORE
        correct = (predicted == labels[key]) | ~mask
        result[key] = (
            float(correct[mask].float().mean()) if key != "cell_shape" else float(correct.float().mean())
        )
        right &= correct.all(dim=1)
    for key in ("background", "backdrop"):
        correct = merged[key].argmax(dim=1) == labels[key]
        result[key] = float(correct.float().mean())
        right &= correct
    for key in ("dark", "framed"):
        correct = (merged[key] > 0).float() == labels[key]
        result[key] = float(correct.float().mean())
        right &= correct
    result["whole_scene"] = float(right.float().mean())
    model.train(was_training)
    return result


def finished(out: Path, result: str) -> bool:
    """Whether the run in ``out`` ended (its log has a final record) and left ``result``."""
    log = out / "log.jsonl"
    return (out / result).exists() and log.is_file() and '"final"' in log.read_text()


def train_perception(
    out: Path, recipe: PerceptionRecipe, *, resume: bool = True, threads: int | None = None
) -> Path:
    """Train (or resume) the tower into ``out``; returns ``out / "vision"`` (at once if already trained)."""
    out = Path(out)
    if resume and finished(out, "vision"):
        return out / "vision"
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(recipe.model_dump_json(indent=1))
    torch.manual_seed(recipe.seed)
    model = SceneCodeVisionModel(scene_code_config(recipe))
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    step, elapsed = 0, 0.0
    state_path = out / STATE_FILE
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
        print(f"resumed at step {step} ({elapsed / 60:.1f} min in)", flush=True)
    val_seed = split_seed(recipe.world_seed, "val")
    val_scenes = [sample_scene(val_seed, i) for i in range(recipe.val_images)]
    val_images = render_batch(val_scenes, recipe.image_size, 0.0, random.Random(0))
    rng = random.Random(f"{recipe.seed}/{step}")
    log = (out / "log.jsonl").open("a")

    def save() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed": elapsed,
            },
            tmp,
        )
        os.replace(tmp, state_path)

    started = time.perf_counter() - elapsed
    last_save = time.perf_counter()
    model.train()
    while step < recipe.steps and (not recipe.time_budget_s or elapsed < recipe.time_budget_s):
        scenes = [sample_scene(recipe.world_seed, rng.randrange(2**40)) for _ in range(recipe.batch_size)]
        images = render_batch(scenes, recipe.image_size, recipe.larger_render, rng)
        pixels = normalise_pixels(images, torch.float32).contiguous(memory_format=torch.channels_last)
        loss = perception_loss(model.heads(pixels), scene_labels(scenes))
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * learning_rate_factor(step, recipe, elapsed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - started
        if step % recipe.log_every == 0:
            record = {"step": step, "minutes": round(elapsed / 60, 2), "loss": round(float(loss.detach()), 4)}
            if step % recipe.val_every == 0:
                record["val"] = {k: round(v, 4) for k, v in evaluate(model, val_images, val_scenes).items()}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps(record), flush=True)
        if time.perf_counter() - last_save > recipe.checkpoint_every_s:
            save()
            last_save = time.perf_counter()
    save()
    final = {
        "step": step,
        "minutes": round(elapsed / 60, 2),
        "final": evaluate(model, val_images, val_scenes),
    }
    log.write(json.dumps(final) + "\n")
    log.close()
    print(json.dumps(final), flush=True)
    model.save_pretrained(out / "vision")
    return out / "vision"
