"""Fitting a bank's caption reader: which answers a description implies (see agent/questioners/caption_reader.py).

Labels come from the world, never from a test world:
- a reference set of training-world scenes, with the oracle's answer to every bank question;
- descriptions of other training-world scenes: template captions (any variant), free descriptions, and 30 % of
  them reworded (world/paraphrase.py), so the reader sees many surface forms of each fact;
- a description *implies* a question's answer when every reference scene it is true of (at least
  ``min_fit`` of them) answers alike, and that many scenes would agree by chance (at the answer's base rate among
  all reference scenes) with probability below ``chance``; otherwise the label is "open". Descriptions true of
  fewer reference scenes are left out.

The chance test matters. Without it, most "implied" answers were base-rate agreements: blue stars are rare, so the
20-odd scenes that fit "a red circle on grey" all lack one, and "is there a blue star? no" was labelled implied
(26 implied answers per description; 15 with the test). A reader fitted on those labels learned "no" as the prior
of every "is there a ...?" question and said it with P > 0.97 even of a description that names the thing ("tiny
blue star top left corner alone on a beige grid" -> "is there a blue star? no"), so its negative readings could
not be trusted in people's words.

The model is fastText-like: hashed n-gram embeddings (random at the start: a zero start learns several times
slower), averaged, one residual ReLU layer, and a softmax per question over its answers plus "open". Only the
embedding rows of features seen in training are kept in the file; a feature never seen reads as zero.

Run by ``chatir starter caption-reader`` (training/cli.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from agent.questioners.bank import QuestionBank
from agent.questioners.caption_reader import IMPLIED_THRESHOLD, CaptionReader, grams
from training.answer_model import oracle_labels, padded_columns
from world.dialogs import split_seed
from world.language import caption_for
from world.paraphrase import free_description, reword
from world.scene import sample_scene
from world.stats import SceneTable


class CaptionReaderRecipe(BaseModel):
    """How a caption reader is fitted (saved in its file's details)."""

    model_config = ConfigDict(extra="forbid")

    world_seed: int = 7
    """The starter's training world: scenes come from its train split (seed 71)."""
    reference: int = Field(20_000, ge=10)
    descriptions: int = Field(40_000, ge=10)
    min_fit: int = Field(20, ge=1)
    chance: float = Field(0.01, gt=0, le=1)
    """An agreement counts as implied only when chance agreement is less likely than this (1: any agreement)."""
    reworded: float = Field(0.3, ge=0, le=1)
    buckets: int = Field(1 << 18, ge=16)
    dim: int = Field(96, ge=2)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(3e-3, gt=0)
    held_out: int = Field(1500, ge=0)
    seed: int = 0


def answer_rates(answers: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``(questions, most answers)``: how often each listed answer is the oracle's among ``answers``' scenes
    (``-1``, an unlisted answer, counts in no column)."""
    rates = np.zeros((answers.shape[1], int(sizes.max())))
    for column in range(answers.shape[1]):
        given = answers[:, column]
        rates[column, : sizes[column]] = np.bincount(given[given >= 0], minlength=sizes[column]) / len(given)
    return rates


def implied_labels(
    bank: QuestionBank, recipe: CaptionReaderRecipe, log: Callable[[str], None]
) -> tuple[list[str], np.ndarray]:
    """Descriptions and, per bank question, the index of the implied answer, ``len(answers)`` for "open", or -1
    for every question of a description true of too few reference scenes."""
    seed = split_seed(recipe.world_seed, "train")
    reference = [sample_scene(seed, i) for i in range(recipe.reference)]
    answers = oracle_labels(reference, bank)
    table = SceneTable.from_scenes(reference)
    sizes = np.array([len(q.answers) for q in bank])
    log_rates = np.log(np.maximum(answer_rates(answers, sizes), 1e-12))  # (questions, answers)
    columns = np.arange(len(bank))
    rng = random.Random(recipe.seed)
    texts: list[str] = []
    labels = np.full((recipe.descriptions, len(bank)), -1, dtype=np.int64)
    for row in range(recipe.descriptions):
        if row and row % 5000 == 0:
            log(f"labelled {row:,}/{recipe.descriptions:,} descriptions")
        index = recipe.reference + row  # never a reference scene
        scene = sample_scene(seed, index)
        if rng.random() < 0.5:
            caption = caption_for(seed, index, scene, rng.randrange(4))
        else:
            caption = free_description(scene, rng)
        texts.append(reword(caption.text, rng) if rng.random() < recipe.reworded else caption.text)
        fits = table.caption_mask(caption)
        if int(fits.sum()) < recipe.min_fit:
            continue
        seen = answers[fits]
        alike = (seen == seen[0]).all(axis=0) & (seen[0] >= 0)
        by_chance = len(seen) * log_rates[columns, np.maximum(seen[0], 0)]  # log P(all alike | base rate)
        labels[row] = np.where(alike & (by_chance < np.log(recipe.chance)), seen[0], sizes)
    return texts, labels


def fit_caption_reader(
    bank: QuestionBank,
    recipe: CaptionReaderRecipe | None = None,
    *,
    log: Callable[[str], None] = print,
) -> CaptionReader:
    """Fit ``bank``'s caption reader on training-world descriptions."""
    recipe = recipe or CaptionReaderRecipe()
    started = time.monotonic()
    torch.manual_seed(recipe.seed)
    texts, labels = implied_labels(bank, recipe, log)
    usable = np.flatnonzero(labels[:, 0] >= 0)
    sizes = torch.tensor([len(q.answers) for q in bank])
    implied_share = float(((labels >= 0) & (labels < sizes.numpy())).sum() / max(1, (labels >= 0).sum()))
    log(
        f"{len(usable):,} of {len(texts):,} descriptions labelled, {implied_share:.1%} of their answers implied "
        f"({time.monotonic() - started:.0f} s)"
    )
    if len(usable) <= recipe.held_out + 1:
        raise ValueError("too few labelled descriptions: raise descriptions or lower min_fit")
    features = [grams(text, recipe.buckets) or [0] for text in texts]

    columns, padding = padded_columns(bank, extra=1)  # each question's answers, then "open"
    total = int(sizes.sum()) + len(bank)
    embedding = torch.nn.EmbeddingBag(recipe.buckets, recipe.dim, mode="mean", sparse=True)
    hidden = torch.nn.Linear(recipe.dim, recipe.dim)
    output = torch.nn.Linear(recipe.dim, total)
    dense = torch.optim.Adam([*hidden.parameters(), *output.parameters()], lr=recipe.lr)
    sparse = torch.optim.SparseAdam(list(embedding.parameters()), lr=recipe.lr)
    targets = torch.from_numpy(labels)

    def forward(rows: list[int]) -> torch.Tensor:
        flat = torch.tensor([j for r in rows for j in features[r]])
        offsets = torch.tensor(np.cumsum([0] + [len(features[r]) for r in rows[:-1]]))
        h = embedding(flat, offsets)
        h = h + torch.relu(hidden(h))
        return output(h)[:, columns].masked_fill(padding, -1e9)

    generator = torch.Generator().manual_seed(recipe.seed)
    order = usable[torch.randperm(len(usable), generator=generator).numpy()]
    held, train = order[: recipe.held_out].tolist(), torch.from_numpy(order[recipe.held_out :])
    measured: dict[str, float] = {}
    for step in range(1, recipe.steps + 1):
        rows = train[torch.randint(0, len(train), (recipe.batch_size,), generator=generator)].tolist()
        loss = -torch.log_softmax(forward(rows), -1).gather(2, targets[rows][..., None]).mean()
        dense.zero_grad()
        sparse.zero_grad()
        loss.backward()
        dense.step()
        sparse.step()
        if held and (step % 500 == 0 or step == recipe.steps):
            with torch.no_grad():
                p = torch.softmax(forward(held), -1)
            confidence, best = p.max(-1)
            truth = targets[held]
            claimed = (best < sizes) & (confidence >= IMPLIED_THRESHOLD)
            right = int(((best == truth) & claimed).sum())
            measured = {
                "precision": right / max(1, int(claimed.sum())),
                "recall": right / max(1, int((truth < sizes).sum())),
                "implied_per_description": float(claimed.sum()) / len(held),
            }
            log(
                f"step {step}/{recipe.steps}: loss {loss.item():.3f}; held out, at P >= {IMPLIED_THRESHOLD}: "
                f"precision {measured['precision']:.3f}, recall {measured['recall']:.3f}, "
                f"{measured['implied_per_description']:.1f} implied answers per description"
            )
    seen = np.unique(np.concatenate([np.asarray(features[r]) for r in train.tolist()]))
    weights = embedding.weight.detach().numpy()
    details = {
        "recipe": recipe.model_dump(),
        "held_out": measured,
        "fit_s": round(time.monotonic() - started, 1),
    }
    return CaptionReader(
        [(q.question, q.answers) for q in bank],
        buckets=recipe.buckets,
        keys=seen,
        table=weights[seen],
        hidden=(hidden.weight.detach().numpy(), hidden.bias.detach().numpy()),
        output=(output.weight.detach().numpy(), output.bias.detach().numpy()),
        details=details,
    )
