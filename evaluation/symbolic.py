"""The symbolic ceiling of a world evaluation, and what the questions were worth.

:class:`SymbolicRetriever` ranks a world corpus the way a retriever that understood every word would: by how
many facts of the dialog so far each image satisfies, from the world's ground truth. The caption is one fact
(its claims hold), each answered round another (the image's oracle answer to that question equals the answer
given; "I don't know" says nothing). Ties are broken at random with a fixed seed. Beside the learned
retriever it separates "the questions don't narrow it down" from "the retriever can't read them".

:func:`question_quality` classifies every question a questioner asked:
- *absent*: an attribute question about an object the target does not have ("what colour is the circle?" when
  there is no circle; the oracle answers "there is no circle");
- *settled*: at least two corpus images fit the dialog so far and all of them give the same answer, so the
  answer cannot change the ranking (e.g. "what colour is the background?" after "on a pink grid"). Once only
  the target fits, nothing is left to settle and questions are not counted as settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chatir.dialog import Dialog
from world.language import Caption, caption_for
from world.oracle import Oracle
from world.query import AttrCheck, AttrChoice, AttrOpen, SameCheck, parse
from world.scene import Scene, parse_image_id
from world.stats import SceneTable

IDK = "I don't know"
_ATTRIBUTE_QUERIES = (AttrOpen, AttrCheck, AttrChoice, SameCheck)


@dataclass(frozen=True)
class SymbolicDialog:
    """Ranks (1-based, per round), consistent-set size per round and the asked questions' classes."""

    ranks: list[int]
    consistent: list[int]
    absent: list[bool]
    settled: list[bool]


class SymbolicRetriever:
    """Ranks a world corpus by the number of dialog facts each image satisfies (see the module doc)."""

    def __init__(self, scenes: Sequence[Scene], *, seed: int = 0) -> None:
        self.scenes = list(scenes)
        self.table = SceneTable.from_scenes(self.scenes)
        self.tiebreak = np.random.default_rng(seed).permutation(len(self.scenes))
        self._answers: dict[str, np.ndarray] = {}

    def answers(self, question: str) -> np.ndarray:
        """The oracle's answer to ``question`` for every corpus image (cached per question)."""
        found = self._answers.get(question)
        if found is None:
            query = parse(question)
            from world.oracle import answer_query

            found = np.array([answer_query(scene, query) for scene in self.scenes], dtype=object)
            self._answers[question] = found
        return found

    def evaluate(self, target: int, caption: Caption | None, dialog: Dialog) -> SymbolicDialog:
        """The ceiling's rank of corpus image ``target`` after each round of ``dialog``."""
        n = len(self.scenes)
        score = np.zeros(n, dtype=np.int32)
        facts = 0
        if caption is not None:
            score += self.table.caption_mask(caption)
            facts += 1
        ranks = [self._rank(score, target)]
        consistent = [int((score == facts).sum())]
        absent, settled = [], []
        target_oracle = Oracle(self.scenes[target])
        for round_ in dialog.rounds:
            query = parse(round_.question)
            truth = target_oracle.answer(round_.question)
            absent.append(isinstance(query, _ATTRIBUTE_QUERIES) and truth.startswith("there is no"))
            fits = score == facts
            answers = self.answers(round_.question)
            settled.append(int(fits.sum()) >= 2 and len(set(answers[fits].tolist())) == 1)
            if round_.answer != IDK:
                score += answers == round_.answer
                facts += 1
            ranks.append(self._rank(score, target))
            consistent.append(int((score == facts).sum()))
        return SymbolicDialog(ranks, consistent, absent, settled)

    def _rank(self, score: np.ndarray, target: int) -> int:
        mine = score[target]
        better = int((score > mine).sum())
        tied_before = int(((score == mine) & (self.tiebreak < self.tiebreak[target])).sum())
        return better + tied_before + 1


def world_caption(image: str, text: str, variants: int = 4) -> Caption | None:
    """The generated :class:`Caption` (with claims) of world image ``image`` whose text is ``text``, if any."""
    from pathlib import PurePath

    from world.scene import sample_scene

    try:
        seed, index = parse_image_id(PurePath(image).stem)
    except ValueError:
        return None
    scene = sample_scene(seed, index)
    for variant in range(variants):
        caption = caption_for(seed, index, scene, variant)
        if caption.text == text:
            return caption
    return None


def padded_ranks(dialogs: Sequence[SymbolicDialog], rounds: int) -> np.ndarray:
    """(n, rounds + 1) ranks; a dialog that stopped early keeps its last rank."""
    out = np.zeros((len(dialogs), rounds + 1), dtype=np.int64)
    for row, d in enumerate(dialogs):
        values = d.ranks + [d.ranks[-1]] * (rounds + 1 - len(d.ranks))
        out[row] = values[: rounds + 1]
    return out


def question_quality(dialogs: Sequence[SymbolicDialog]) -> dict[str, float]:
    """Share of asked questions that were about absent objects, about settled facts, or either (percent)."""
    absent = [a for d in dialogs for a in d.absent]
    settled = [s for d in dialogs for s in d.settled]
    either = [a or s for d in dialogs for a, s in zip(d.absent, d.settled, strict=True)]
    asked = len(either)

    def share(values: list[bool]) -> float:
        return round(100.0 * sum(values) / asked, 2) if asked else 0.0

    return {
        "asked": asked,
        "absent_pct": share(absent),
        "settled_pct": share(settled),
        "absent_or_settled_pct": share(either),
    }


def consistent_sizes(dialogs: Sequence[SymbolicDialog], rounds: int) -> list[float]:
    """Median size of the set of images consistent with the dialog so far, per round."""
    sizes = np.array(
        [d.consistent + [d.consistent[-1]] * (rounds + 1 - len(d.consistent)) for d in dialogs],
        dtype=np.float64,
    )[:, : rounds + 1]
    return np.median(sizes, axis=0).tolist()
