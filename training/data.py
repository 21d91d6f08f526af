"""Training data for the dialog encoder: ChatIR dialog files, partial dialogs D_i and their galleries.

A training sample is a partial dialog D_i (caption + first i rounds, i uniform in 0..max_round, masked per
:class:`MaskingConfig`) and the corpus index of its target image. The image side is frozen: every corpus
image is embedded once (cached on disk by :mod:`evaluation.embeddings`, keyed by the model's image
tower and the file list), and a batch's gallery is the set of its targets (in-batch negatives), plus the
nearest cached neighbours of each target (hard negatives) and random cached images, if asked.

Everything random is a pure function of (seed, epoch, position), so an epoch can be replayed exactly when
a run resumes in its middle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatir.dialog import Dialog, Round
from evaluation.data import ImageCorpus, TargetDialog, load_chatir_dialogs, normalise_relpath
from training.masking import MaskingConfig, mask_dialog

SIMILARITY_CHUNK = 2048


@dataclass(frozen=True)
class Sample:
    """One partial dialog (as text parts, after masking) and the corpus index of its target."""

    parts: tuple[str, ...]
    target: int
    dialog: int  # index of the dialog it came from
    round: int  # i of D_i before masking


@dataclass(frozen=True)
class Batch:
    """Samples and their gallery: ``gallery`` holds corpus indices, ``targets[j]`` is sample j's column."""

    samples: tuple[Sample, ...]
    gallery: np.ndarray  # (m,) int64 corpus indices, unique
    targets: np.ndarray  # (n,) int64 columns into ``gallery``


def parts_as_dialog(parts: Sequence[str]) -> Dialog:
    """Masked parts as a :class:`Dialog`, so the model's own ``dialog_text`` (separator, truncation) applies.

    The first part plays the caption (the anchor kept on truncation); each later part is one round whose
    text is the part itself.
    """
    first, *rest = parts
    return Dialog(caption=first, rounds=[Round(question=part, answer="") for part in rest])


def training_corpus(dialogs: Sequence[TargetDialog], root: Path) -> ImageCorpus:
    """The images the dialogs point at, sorted by path (duplicates once); a clear error when files are missing."""
    from evaluation.data import EvaluationInputError

    root = Path(root)
    if not root.is_dir():
        raise EvaluationInputError(f"image root {root} is not a folder")
    paths = sorted({normalise_relpath(d.img) for d in dialogs})
    missing = [p for p in paths if not (root / p).is_file()]
    if missing:
        raise EvaluationInputError(
            f"{len(missing)} of {len(paths)} target images are missing under {root} (e.g. {missing[0]}); "
            "'img' paths in the dialog file are relative to the image root"
        )
    return ImageCorpus(root=root, paths=tuple(paths))


def nearest_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """For each row of ``vectors`` (unit length), the indices of its ``k`` most similar other rows."""
    n = len(vectors)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, SIMILARITY_CHUNK):
        stop = min(start + SIMILARITY_CHUNK, n)
        scores = vectors[start:stop] @ vectors.T
        scores[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start:stop] = np.take_along_axis(top, order, axis=1)
    return out


class DialogTrainingSet:
    """Dialogs with target corpus indices, turned into deterministic epochs of batches."""

    def __init__(
        self,
        dialogs: Sequence[TargetDialog],
        corpus: ImageCorpus,
        *,
        masking: MaskingConfig,
        max_round: int = 10,
        seed: int = 0,
    ) -> None:
        if len(dialogs) < 2:
            raise ValueError("training needs at least two dialogs")
        self.dialogs = [d.dialog for d in dialogs]
        self.targets = np.asarray(corpus.target_indices([d.img for d in dialogs]), dtype=np.int64)
        self.corpus = corpus
        self.masking = masking
        self.max_round = max_round
        self.seed = seed

    @classmethod
    def from_files(
        cls, dialogs_file: Path, images: Path, *, limit: int | None = None, **kwargs
    ) -> DialogTrainingSet:
        dialogs = load_chatir_dialogs(Path(dialogs_file), limit=limit)
        return cls(dialogs, training_corpus(dialogs, images), **kwargs)

    def __len__(self) -> int:
        return len(self.dialogs)

    def sample(self, epoch: int, position: int, dialog_index: int) -> Sample:
        """The sample drawn for ``dialog_index`` at ``position`` of ``epoch`` (a pure function of the three)."""
        rng = np.random.default_rng([self.seed, epoch, position, 1])
        dialog = self.dialogs[dialog_index]
        i = int(rng.integers(0, min(self.max_round, len(dialog.rounds)) + 1))
        parts = mask_dialog(dialog.upto(i), self.masking, rng)
        return Sample(
            parts=tuple(parts), target=int(self.targets[dialog_index]), dialog=dialog_index, round=i
        )

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.dialogs))

    def n_batches(self, batch_size: int, max_steps: int | None = None) -> int:
        full = (
            len(self.dialogs) // batch_size
        )  # the last incomplete batch is dropped (its gallery would be tiny)
        n = max(1, full)
        return min(n, max_steps) if max_steps else n

    def batch(
        self,
        epoch: int,
        step: int,
        batch_size: int,
        *,
        neighbours: np.ndarray | None = None,
        random_negatives: int = 0,
    ) -> Batch:
        """Batch ``step`` of ``epoch``: its samples and gallery (targets, then hard, then random negatives)."""
        order = self.order(epoch)
        positions = range(step * batch_size, min((step + 1) * batch_size, len(order)))
        samples = tuple(self.sample(epoch, p, int(order[p])) for p in positions)
        gallery: dict[int, int] = {}
        for s in samples:
            gallery.setdefault(s.target, len(gallery))
        if neighbours is not None and neighbours.shape[1]:
            for s in samples:
                for other in neighbours[s.target]:
                    gallery.setdefault(int(other), len(gallery))
        if random_negatives:
            rng = np.random.default_rng([self.seed, epoch, step, 2])
            for other in rng.choice(
                len(self.corpus), size=min(random_negatives, len(self.corpus)), replace=False
            ):
                gallery.setdefault(int(other), len(gallery))
        columns = np.fromiter(gallery.keys(), dtype=np.int64, count=len(gallery))
        targets = np.asarray([gallery[s.target] for s in samples], dtype=np.int64)
        return Batch(samples=samples, gallery=columns, targets=targets)
