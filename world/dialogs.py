"""Dialogs with the oracle and train/val/test splits in ChatIR's JSON format.

A dialog is a caption and ten rounds; each round is a bank question (never repeated) and the oracle's answer.
Half of the questions (``relevant``) are drawn among those whose answer is positive -- what a good questioner
tends to ask -- the others at random, so the dialogs also hold the many "no" answers real questioners get.

Split layout (image paths in the dialog files are relative to the split folder, as in the manifest)::

    ROOT/splits.json
    ROOT/{train,val,test}/world.json, manifest.jsonl, images/...
    ROOT/{train,val,test}_dialogs.json      [{"img": "images/000/w71-000000.png", "dialog": [caption, "q a", ...]}]
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field
from tqdm import tqdm

from chatir.dialog import Dialog, Round
from world.generator import WorldError, generate_world, image_relpath
from world.language import caption_for
from world.oracle import Oracle
from world.questions import question_bank
from world.scene import Scene, sample_scene, scene_rng

SPLITS = ("train", "val", "test")
SPLITS_FILE = "splits.json"
_SPLIT_OFFSET = {"train": 1, "val": 2, "test": 3}
_NEGATIVE = ("no", "none", "nothing")
_DIALOG_CHUNK = 500
_PARALLEL_FROM = 5000


def split_seed(seed: int, split: str) -> int:
    """The world seed of one split: ``seed * 10 + 1|2|3`` for train|val|test (all different for any seed)."""
    return seed * 10 + _SPLIT_OFFSET[split]


def is_negative(answer: str) -> bool:
    return answer in _NEGATIVE or answer.startswith("there is no")


def make_dialog(
    scene: Scene,
    caption: str,
    rng: random.Random,
    *,
    rounds: int = 10,
    bank: Sequence[str] | None = None,
    relevant: float = 0.5,
) -> Dialog:
    """The caption and ``rounds`` rounds of bank questions (no repeats) answered by the oracle."""
    questions = list(bank) if bank is not None else question_bank()
    if rounds > len(questions):
        raise ValueError(f"{rounds} rounds need at least as many questions (the bank has {len(questions)})")
    oracle = Oracle(scene)
    order = questions[:]
    rng.shuffle(order)
    answers: dict[str, str] = {}
    asked: set[str] = set()
    result: list[Round] = []

    def answer(q: str) -> str:
        if q not in answers:
            answers[q] = oracle.answer(q)
        return answers[q]

    for _ in range(rounds):
        pick = None
        if rng.random() < relevant:
            pick = next((q for q in order if q not in asked and not is_negative(answer(q))), None)
        if pick is None:
            pick = next(q for q in order if q not in asked)
        asked.add(pick)
        result.append(Round(question=pick, answer=answer(pick)))
    return Dialog(caption=caption, rounds=result)


def dialog_for(seed: int, index: int, *, rounds: int = 10, variant: int = 0) -> Dialog:
    """The dialog of image ``index`` of world ``seed`` (deterministic)."""
    scene = sample_scene(seed, index)
    caption = caption_for(seed, index, scene, variant).text
    return make_dialog(scene, caption, scene_rng(seed, index, f"dialog/{variant}"), rounds=rounds)


def _dialog_chunk(job: tuple[int, Sequence[int], int]) -> list[dict[str, object]]:
    seed, indices, rounds = job
    return [
        {"img": image_relpath(seed, i), "dialog": dialog_for(seed, i, rounds=rounds).parts()} for i in indices
    ]


def dialog_entries(
    seed: int,
    indices: Sequence[int],
    *,
    rounds: int = 10,
    workers: int | None = 1,
    progress: bool = False,
) -> list[dict[str, object]]:
    """ChatIR-format entries ``{"img": relative path, "dialog": [caption, "q a", ...]}`` for these images.

    ``workers`` > 1 (or None: all cores) spreads large batches over spawned processes; the result is the same.
    """
    indices = list(indices)
    chunks = [indices[k : k + _DIALOG_CHUNK] for k in range(0, len(indices), _DIALOG_CHUNK)]
    jobs = [(seed, chunk, rounds) for chunk in chunks]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if len(indices) < _PARALLEL_FROM:
        workers = 1  # ~1 ms a dialog: starting processes costs more than it saves
    entries: list[dict[str, object]] = []
    with tqdm(total=len(indices), desc=f"dialogs w{seed}", unit="dialog", disable=not progress) as bar:
        if workers == 1:
            results = map(_dialog_chunk, jobs)
            for chunk in results:
                entries += chunk
                bar.update(len(chunk))
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for chunk in pool.imap(_dialog_chunk, jobs):
                    entries += chunk
                    bar.update(len(chunk))
    return entries


class SplitInfo(BaseModel):
    seed: int
    n_images: int
    n_dialogs: int
    world_dir: str
    dialogs_file: str


class SplitsInfo(BaseModel):
    """What ``splits.json`` records."""

    seed: int
    size: int
    rounds: int = 10
    splits: dict[str, SplitInfo] = Field(default_factory=dict)


def make_splits(
    root: str | Path,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    *,
    size: int = 64,
    workers: int | None = None,
    val_dialogs: int | None = None,
    test_dialogs: int | None = None,
    rounds: int = 10,
    progress: bool = True,
) -> SplitsInfo:
    """Worlds and dialogs for train/val/test, each split with its own seed (:func:`split_seed`).

    Every train image gets a dialog; ``val_dialogs``/``test_dialogs`` limit the val/test dialogs to the first
    images of their split (default: all), e.g. a 50K test corpus with 2,000 test dialogs. A split of 0 images
    is skipped. Resumable: finished images are kept and the dialogs are deterministic.
    """
    if seed < 0:
        raise WorldError(f"the seed must be non-negative (got {seed})")
    wanted = {"train": (n_train, n_train), "val": (n_val, val_dialogs), "test": (n_test, test_dialogs)}
    for split, (n_images, n_dialogs) in wanted.items():  # check everything before writing anything
        if n_images < 0:
            raise WorldError(f"the number of {split} images must be non-negative (got {n_images})")
        if n_dialogs is not None and not 0 <= n_dialogs <= n_images:
            raise WorldError(f"{split}: {n_dialogs} dialogs asked for {n_images} images")
    if n_train + n_val + n_test == 0:
        raise WorldError("no images asked for: give at least one split a positive size")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    info = SplitsInfo(seed=seed, size=size, rounds=rounds)
    for split, (n_images, n_dialogs) in wanted.items():
        if n_images == 0:
            continue
        n_dialogs = n_images if n_dialogs is None else n_dialogs
        world_seed = split_seed(seed, split)
        generate_world(root / split, n_images, world_seed, size=size, workers=workers, progress=progress)
        entries = dialog_entries(
            world_seed, range(n_dialogs), rounds=rounds, workers=workers, progress=progress
        )
        dialogs_file = f"{split}_dialogs.json"
        _write_json(root / dialogs_file, entries)
        info.splits[split] = SplitInfo(
            seed=world_seed,
            n_images=n_images,
            n_dialogs=n_dialogs,
            world_dir=split,
            dialogs_file=dialogs_file,
        )
    _write_json(root / SPLITS_FILE, info.model_dump())
    return info


def read_splits(root: str | Path) -> SplitsInfo:
    path = Path(root) / SPLITS_FILE
    if not path.exists():
        raise WorldError(f"{root} has no {SPLITS_FILE}; run `chatir world splits` first")
    return SplitsInfo.model_validate_json(path.read_text(encoding="utf-8"))


def load_dialogs(path: str | Path) -> list[tuple[str, Dialog]]:
    """(image path, dialog) pairs of a ChatIR-format dialog file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WorldError(f"cannot read dialogs from {path}: {error}") from None
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and "img" in e and "dialog" in e for e in data
    ):
        raise WorldError(f"{path} is not a ChatIR dialog file (a list of {{'img', 'dialog'}} objects)")
    return [(e["img"], Dialog.from_chatir(e["dialog"])) for e in data]


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
