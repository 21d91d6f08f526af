"""Fitting a bank's answer model: a linear read-out of every answer from the model's image embeddings.

Pictures of a training world (never a test world) are rendered, embedded by the model's image tower exactly as
the index embeds them (L2-normalised), and answered by the world's oracle for every bank question. A softmax
per question over ``image . w_a + b_a`` is then fitted by cross-entropy (Adam, minibatches), holding out a
share of the pictures to report accuracy. The result is an :class:`agent.questioners.answer_model.AnswerModel`
file the questioner and the re-ranker load torch-free (see that module for why it exists).

Run by ``chatir starter answers`` (training/cli.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from agent.questioners.answer_model import PROBE_TEXT, AnswerModel
from agent.questioners.bank import QuestionBank
from world.dialogs import split_seed
from world.oracle import answer_query
from world.query import parse
from world.render import render_scene
from world.scene import Scene, sample_scene


class AnswerRecipe(BaseModel):
    """How an answer model is fitted (saved in its file's details)."""

    model_config = ConfigDict(extra="forbid")

    world_seed: int = 7
    """The starter's training world: pictures come from its train split (seed 71)."""
    images: int = Field(8000, ge=10)
    image_size: int = Field(96, ge=16)
    held_out: float = Field(0.1, ge=0, lt=1)
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(0.02, gt=0)
    seed: int = 0


def oracle_labels(scenes: Sequence[Scene], bank: QuestionBank) -> np.ndarray:
    """``(n_scenes, n_questions)``: the index of the oracle's answer among each question's listed answers,
    -1 where the oracle says something the bank does not list."""
    labels = np.full((len(scenes), len(bank)), -1, dtype=np.int64)
    for column, question in enumerate(bank):
        query = parse(question.question)
        index = {answer: j for j, answer in enumerate(question.answers)}
        for row, scene in enumerate(scenes):
            labels[row, column] = index.get(answer_query(scene, query), -1)
    return labels


def padded_columns(bank: QuestionBank, *, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each question's output columns (its answers, then ``extra`` more) padded to the longest, and the padding
    mask; a question's columns follow the previous question's."""
    lengths = [len(q.answers) + extra for q in bank]
    width, start = max(lengths), 0
    columns = torch.zeros((len(bank), width), dtype=torch.long)
    padding = torch.ones((len(bank), width), dtype=torch.bool)
    for row, length in enumerate(lengths):
        columns[row, :length] = torch.arange(start, start + length)
        padding[row, :length] = False
        start += length
    return columns, padding


def fit_answer_model(
    model,
    bank: QuestionBank,
    recipe: AnswerRecipe | None = None,
    *,
    log: Callable[[str], None] = print,
) -> AnswerModel:
    """Fit ``bank``'s answer model over ``model``'s image space (a :class:`RetrievalModel`)."""
    recipe = recipe or AnswerRecipe()
    started = time.monotonic()
    seed = split_seed(recipe.world_seed, "train")
    scenes = [sample_scene(seed, i) for i in range(recipe.images)]
    vectors = []
    for start in range(0, len(scenes), 256):
        chunk = [render_scene(s, recipe.image_size) for s in scenes[start : start + 256]]
        vectors.append(np.asarray(model.encode_images(chunk), dtype=np.float32))
        done = min(start + 256, len(scenes))
        if done % 2048 == 0 or done == len(scenes):
            log(f"embedded {done:,}/{len(scenes):,} pictures")
    images = torch.from_numpy(np.concatenate(vectors))
    labels = torch.from_numpy(oracle_labels(scenes, bank))
    elapsed = time.monotonic() - started
    log(f"oracle answers: {labels.shape[0]:,} pictures x {labels.shape[1]} questions ({elapsed:.0f} s)")

    generator = torch.Generator().manual_seed(recipe.seed)
    order = torch.randperm(len(scenes), generator=generator)
    n_held = round(recipe.held_out * len(scenes))
    held, train = order[:n_held], order[n_held:]
    columns, padding = padded_columns(bank)
    total = int(sum(len(q.answers) for q in bank))
    weights = torch.zeros((total, images.shape[1]), requires_grad=True)
    bias = torch.zeros(total, requires_grad=True)
    optimiser = torch.optim.Adam([weights, bias], lr=recipe.lr)

    def loss_and_accuracy(rows: torch.Tensor) -> tuple[torch.Tensor, float]:
        logits = (images[rows] @ weights.T + bias)[:, columns].masked_fill(padding, -1e9)
        target = labels[rows]
        known = target >= 0
        picked = torch.log_softmax(logits, dim=-1).gather(2, target.clamp(min=0)[..., None])[..., 0]
        loss = -(picked * known).sum() / known.sum().clamp(min=1)
        correct = ((logits.argmax(-1) == target) & known).sum().item()
        return loss, correct / max(int(known.sum().item()), 1)

    held_accuracy = None
    for step in range(1, recipe.steps + 1):
        batch = train[torch.randint(0, len(train), (recipe.batch_size,), generator=generator)]
        optimiser.zero_grad()
        loss, accuracy = loss_and_accuracy(batch)
        loss.backward()
        optimiser.step()
        if step % 250 == 0 or step == recipe.steps:
            message = f"step {step}/{recipe.steps}: loss {loss.item():.3f}, accuracy {accuracy:.3f}"
            if n_held:
                with torch.no_grad():
                    _, held_accuracy = loss_and_accuracy(held)
                message += f", held-out accuracy {held_accuracy:.3f}"
            log(message)
    probe = np.asarray(model.encode_texts([PROBE_TEXT]), dtype=np.float32)[0]
    details = {
        "recipe": recipe.model_dump(),
        "held_out_accuracy": held_accuracy,
        "labelled_share": float((labels >= 0).float().mean()),
        "fit_s": round(time.monotonic() - started, 1),
    }
    return AnswerModel(
        [(q.question, q.answers) for q in bank],
        weights.detach().numpy(),
        bias.detach().numpy(),
        model=str(model.model_id),
        text_probe=probe,
        details=details,
    )
