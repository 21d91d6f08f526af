"""ChatIR's protocol, fixed dialogs: rank every test target after each round 0..R of its dialog.

For each dialog ``D`` and each round ``r`` the model encodes ``D_r`` (caption + first ``r`` rounds, joined as
the model's :meth:`dialog_text` does: ChatIR's ``", ".join(dialog[:r+1])`` with the model's truncation), and
the target's rank among the corpus images is computed by :func:`metrics.rank_of_targets` (batched matrix
products). Corpus embeddings come from :mod:`evaluation.embeddings` (computed once, cached).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from chatir.dialog import Dialog
from evaluation.data import ImageCorpus, TargetDialog
from evaluation.embeddings import corpus_embeddings, text_embeddings
from evaluation.metrics import TiePolicy, rank_of_targets
from evaluation.results import DEFAULT_KS, SystemResult


class EvaluationModel(Protocol):
    """What the harness needs of :class:`retriever_service.models.RetrievalModel`."""

    model_id: str
    dim: int

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...
    def dialog_text(self, dialog: Dialog) -> str: ...


def dialog_round_texts(model: EvaluationModel, dialogs: Sequence[Dialog], rounds: int) -> list[str]:
    """Round-major texts: all dialogs at round 0, then all at round 1, ... up to ``rounds``.

    A dialog shorter than ``rounds`` keeps its last round from there on, as ChatIR's eval.py does (its text
    stops growing); :func:`evaluate_fixed_dialogs` reports how many there were."""
    return [model.dialog_text(d.upto(min(r, len(d.rounds)))) for r in range(rounds + 1) for d in dialogs]


def ranks_for_texts(
    model: EvaluationModel,
    texts: Sequence[str],
    targets: np.ndarray,
    corpus_vectors: np.ndarray,
    *,
    ties: TiePolicy = "index",
    text_cache: Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """1-based ranks of ``targets`` (aligned with ``texts``) and the time spent encoding and ranking."""
    started = time.perf_counter()
    query_vectors = text_embeddings(model, texts, text_cache, progress=progress)
    encoded = time.perf_counter()
    ranks = rank_of_targets(query_vectors, corpus_vectors, targets, ties=ties)
    ranked = time.perf_counter()
    return ranks, {"encode_texts": encoded - started, "rank": ranked - encoded}


def evaluate_fixed_dialogs(
    model: EvaluationModel,
    dialogs: Sequence[TargetDialog],
    corpus: ImageCorpus,
    *,
    name: str,
    rounds: int = 10,
    corpus_vectors: np.ndarray | None = None,
    cache_root: Path | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    ties: TiePolicy = "index",
    progress: bool = True,
) -> tuple[SystemResult, np.ndarray]:
    """Evaluate one dialog set; returns its :class:`SystemResult` and the ``(n_dialogs, rounds+1)`` ranks.

    ``cache_root`` (optional) keeps corpus embeddings under ``corpus/`` and dialog-text embeddings under
    ``texts/`` (resumable; a second evaluation of the same dialogs with the same model is instant).
    """
    timings: dict[str, float] = {}
    targets = np.asarray(corpus.target_indices([d.img for d in dialogs]), dtype=np.int64)
    if corpus_vectors is None:
        started = time.perf_counter()
        corpus_cache = cache_root / "corpus" if cache_root is not None else None
        corpus_vectors = corpus_embeddings(model, corpus, corpus_cache, progress=progress)
        timings["corpus_embeddings"] = time.perf_counter() - started
    started = time.perf_counter()
    texts = dialog_round_texts(model, [d.dialog for d in dialogs], rounds)
    short = sum(len(d.dialog.rounds) < rounds for d in dialogs)
    timings["build_texts"] = time.perf_counter() - started
    flat_ranks, spent = ranks_for_texts(
        model,
        texts,
        np.tile(targets, rounds + 1),
        corpus_vectors,
        ties=ties,
        text_cache=cache_root / "texts" if cache_root is not None else None,
        progress=progress,
    )
    timings.update(spent)
    ranks = flat_ranks.reshape(rounds + 1, len(dialogs)).T
    questions = [[r.question for r in d.dialog.rounds[:rounds]] for d in dialogs]
    result = SystemResult.from_ranks(
        name,
        ranks,
        mode="fixed",
        model_id=str(model.model_id),
        ks=ks,
        questions=questions,
        timings_s=timings,
        details={
            "corpus_size": len(corpus),
            "n_texts": len(texts),
            "unique_texts": len(set(texts)),
            "ties": ties,
            "dialogs_shorter_than_rounds": short,
        },
    )
    return result, ranks
