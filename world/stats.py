"""How much a caption alone pins down: for each caption, the number of corpus images it is true of.

Scenes are packed into small integer arrays so that one caption is checked against 50K scenes with a few
vectorised comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from world.language import Caption
from world.query import CountTest, ObjectFilter, SceneFilter
from world.scene import Scene
from world.vocab import (
    BACKDROPS,
    BACKGROUNDS,
    COLOURS,
    LIGHTINGS,
    MAX_OBJECTS,
    PATTERNS,
    POSITIONS,
    SHAPES,
    SIZES,
)

_FIELDS = (
    ("shape", SHAPES),
    ("colour", COLOURS),
    ("size", SIZES),
    ("pattern", PATTERNS),
    ("position", POSITIONS),
)


@dataclass(frozen=True)
class SceneTable:
    """Scenes as arrays: ``objects`` (n, 4, 5) with -1 for empty slots; ``scene`` (n, 4)."""

    objects: np.ndarray
    scene: np.ndarray

    @classmethod
    def from_scenes(cls, scenes: Sequence[Scene]) -> SceneTable:
        objects = np.full((len(scenes), MAX_OBJECTS, len(_FIELDS)), -1, dtype=np.int8)
        table = np.zeros((len(scenes), 4), dtype=np.int8)
        index = [{v: i for i, v in enumerate(values)} for _, values in _FIELDS]
        for n, scene in enumerate(scenes):
            for k, obj in enumerate(scene.objects):
                for f, (name, _) in enumerate(_FIELDS):
                    objects[n, k, f] = index[f][getattr(obj, name)]
            table[n] = (
                BACKGROUNDS.index(scene.background),
                BACKDROPS.index(scene.backdrop),
                LIGHTINGS.index(scene.lighting),
                int(scene.frame),
            )
        return cls(objects, table)

    def count(self, f: ObjectFilter) -> np.ndarray:
        """Number of objects matching ``f`` in every scene."""
        if f.extreme is not None:
            raise ValueError("superlatives are not supported in vectorised counts")
        mask = self.objects[:, :, 0] >= 0
        for column, (name, values) in enumerate(_FIELDS):
            allowed = f.constraint(name)
            if allowed is not None:
                ids = [values.index(v) for v in allowed if v in values]
                mask &= np.isin(self.objects[:, :, column], ids)
        return mask.sum(axis=1)

    def scene_mask(self, sf: SceneFilter) -> np.ndarray:
        mask = np.ones(len(self.scene), dtype=bool)
        for column, (allowed, values) in enumerate(
            ((sf.backgrounds, BACKGROUNDS), (sf.backdrops, BACKDROPS), (sf.lightings, LIGHTINGS))
        ):
            if allowed is not None:
                mask &= np.isin(self.scene[:, column], [values.index(v) for v in allowed if v in values])
        if sf.frame is not None:
            mask &= self.scene[:, 3] == int(sf.frame)
        return mask

    def caption_mask(self, caption: Caption) -> np.ndarray:
        """Which scenes the caption is true of."""
        mask = self.scene_mask(caption.claims.scene)
        for f, test in caption.claims.groups:
            mask &= _holds(test, self.count(f))
        return mask


def _holds(test: CountTest, counts: np.ndarray) -> np.ndarray:
    ops = {"==": np.equal, ">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
    return ops[test.op](counts, test.n)


def caption_match_counts(corpus: Sequence[Scene] | SceneTable, captions: Sequence[Caption]) -> np.ndarray:
    """For each caption, how many scenes of ``corpus`` it is true of (its own image included)."""
    table = corpus if isinstance(corpus, SceneTable) else SceneTable.from_scenes(corpus)
    return np.array([int(table.caption_mask(c).sum()) for c in captions], dtype=np.int64)


def summarize(counts: np.ndarray) -> dict[str, float]:
    """Mean, median, quartiles and the share of captions that fit at most 10 images."""
    return {
        "captions": len(counts),
        "mean": float(np.mean(counts)),
        "median": float(np.median(counts)),
        "p25": float(np.percentile(counts, 25)),
        "p75": float(np.percentile(counts, 75)),
        "min": int(np.min(counts)),
        "max": int(np.max(counts)),
        "share_at_most_10": float(np.mean(counts <= 10)),
    }
