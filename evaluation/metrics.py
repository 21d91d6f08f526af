"""ChatIR protocol metrics, computed from a matrix of target ranks (numpy), and the ranks themselves.

``ranks`` has shape ``(n_dialogs, n_rounds)``: ``ranks[d, r]`` is the **1-based** rank of dialog ``d``'s
target image in the corpus after round ``r`` (round 0 = caption only). Rank 1 = the top match.

Definitions, checked against the reference code:

- **Hits@K** (ChatIR ``eval.py``, ``cumulative_hits_per_round``): ChatIR keeps the 0-based position of the
  target in ``argsort(scores, descending=True)`` and calls it a hit when that position is ``< K`` (= 1-based
  rank ``<= K``). A dialog counts as a hit at round ``r`` when its *first hitting time* is ``<= r``: once the
  target was in the top K it stays counted, even if a later round pushes it out. Reported in percent.
- **Recall@K** (PlugIR ``eval.py``, ``temp_hits``): the target is in the top K *at* round ``r``; not cumulative.
- **ATR**, average target rank: mean 1-based rank per round (ChatIR, Figure 3).
- **BRI**, Best log Rank Integral (PlugIR, ACL 2024, ``eval.py``): with ``m_r`` the best (lowest) 0-based
  position reached up to round ``r``, ``BRI = mean_d (1/R) * sum_{r<R} (log(m_r + 1) + log(m_{r+1} + 1)) / 2``:
  the trapezoid integral over rounds 0..R of the log of the best 1-based rank so far, divided by the number
  of intervals ``R`` (``num_rounds - 1``), natural log. 0 when every target is first from the start; lower
  is better.

Ranks come from :func:`rank_of_targets` (one torch matrix product per chunk of queries, counting in numpy on
the CPU); ties in scores are handled there (see its docstring).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

TiePolicy = Literal["index", "optimistic", "pessimistic"]

# --------------------------------------------------------------------------------------------------------
# ranks from embeddings
# --------------------------------------------------------------------------------------------------------


def rank_of_targets(
    query_vectors,
    corpus_vectors,
    target_indices,
    *,
    ties: TiePolicy = "index",
    chunk_size: int = 1024,
) -> np.ndarray:
    """1-based rank of each query's target among ``corpus_vectors`` by dot product (cosine for unit vectors).

    Inputs are numpy arrays or torch tensors (on any device; numpy runs on the CPU). Scores are computed in
    chunks of ``chunk_size`` queries with one matrix product each (no Python loop over the corpus); a
    target's own score is read from the same product, so it is compared bit for bit.

    Ties: ChatIR ranks with ``torch.argsort(scores, descending=True)``, whose order among equal scores is
    unspecified (torch's CPU sort is not stable beyond ~100 elements). ``"index"`` (default) is the
    deterministic version of that, equal to ``torch.argsort(..., descending=True, stable=True)``: an image
    with an equal score ranks ahead of the target when its corpus index is smaller, so
    ``rank = 1 + #(score > s_t) + #(score == s_t and index < t)``. ``"optimistic"`` counts only strictly
    higher scores, ``"pessimistic"`` counts every other image with a score ``>=`` the target's.
    """
    import torch  # the matrix products; imported here so that the metrics stay importable without it

    queries = torch.as_tensor(query_vectors, dtype=torch.float32)
    corpus = torch.as_tensor(corpus_vectors, dtype=torch.float32).to(queries.device)
    targets = torch.as_tensor(target_indices).to(device=queries.device, dtype=torch.int64).reshape(-1)
    if queries.ndim != 2 or corpus.ndim != 2:
        raise ValueError("query_vectors and corpus_vectors must be 2-D arrays")
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"dimension mismatch: queries have {queries.shape[1]}, corpus has {corpus.shape[1]}")
    if len(targets) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(targets)} target indices")
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= len(corpus)):
        raise ValueError(f"target indices must lie in [0, {len(corpus)})")
    if ties not in ("index", "optimistic", "pessimistic"):
        raise ValueError(f"unknown tie policy {ties!r}")

    corpus_t = corpus.T.contiguous()
    on_cpu = queries.device.type == "cpu"
    ranks = np.empty(len(queries), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(queries), chunk_size):
            stop = min(start + chunk_size, len(queries))
            scores = queries[start:stop] @ corpus_t  # (chunk, n_corpus), one BLAS call
            if on_cpu:  # numpy's counting of boolean masks is several times faster than torch's on CPU
                ahead = _count_ahead_numpy(scores.numpy(), targets[start:stop].numpy(), ties)
            else:
                ahead = _count_ahead_torch(scores, targets[start:stop], ties).cpu().numpy()
            ranks[start:stop] = ahead + 1
    return ranks


def _count_ahead_numpy(scores: np.ndarray, targets: np.ndarray, ties: TiePolicy) -> np.ndarray:
    """Per row, how many corpus images rank ahead of the target under the tie policy.

    Counted row by row: ``np.count_nonzero`` of a whole 1-D mask is several times faster than its
    ``axis=`` form (or torch's ``sum``) on a CPU.
    """
    own = scores[np.arange(len(targets)), targets]
    ahead = np.array(
        [np.count_nonzero(row > value) for row, value in zip(scores, own, strict=True)], dtype=np.int64
    )
    if ties == "optimistic":
        return ahead
    # every row has at least one equal score (the target's own); only rows with more hold a tie
    others_equal = (
        np.array(
            [np.count_nonzero(row == value) for row, value in zip(scores, own, strict=True)], dtype=np.int64
        )
        - 1
    )
    if ties == "pessimistic":
        return ahead + others_equal
    for row in np.flatnonzero(others_equal > 0):  # rare with real embeddings: the corpus-index rule
        target = targets[row]
        ahead[row] += np.count_nonzero(scores[row, :target] == own[row])
    return ahead


def _count_ahead_torch(scores, targets, ties: TiePolicy):
    """:func:`_count_ahead_numpy` on an accelerator."""
    import torch

    own = scores.gather(1, targets[:, None])
    ahead = (scores > own).sum(dim=1)
    if ties == "optimistic":
        return ahead
    equal = scores == own
    others_equal = equal.sum(dim=1) - 1
    if ties == "pessimistic":
        return ahead + others_equal
    tied_rows = torch.nonzero(others_equal > 0).flatten()
    if len(tied_rows):
        column = torch.arange(scores.shape[1], device=scores.device)
        ahead[tied_rows] += (equal[tied_rows] & (column[None, :] < targets[tied_rows, None])).sum(dim=1)
    return ahead


# --------------------------------------------------------------------------------------------------------
# metrics from ranks
# --------------------------------------------------------------------------------------------------------


def _check_ranks(ranks: np.ndarray) -> np.ndarray:
    array = np.asarray(ranks)
    if array.ndim != 2:
        raise ValueError(f"ranks must be (n_dialogs, n_rounds), got shape {array.shape}")
    if array.size and array.min() < 1:
        raise ValueError("ranks are 1-based: every rank must be >= 1")
    return array


def first_hit_round(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per dialog, the first round whose rank is ``<= k``; ``-1`` when the target never enters the top k."""
    hits = _check_ranks(ranks) <= k
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), first, -1)


def hits_at_k(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """ChatIR's Hits@K per round, in percent: share of dialogs whose target was in the top k at some round <= r."""
    array = _check_ranks(ranks)
    if array.shape[0] == 0:
        return np.full(array.shape[1], np.nan)
    cumulative = np.logical_or.accumulate(array <= k, axis=1)
    return cumulative.mean(axis=0) * 100.0


def recall_at_k(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Recall@K per round, in percent: share of dialogs whose target is in the top k at that round."""
    array = _check_ranks(ranks)
    if array.shape[0] == 0:
        return np.full(array.shape[1], np.nan)
    return (array <= k).mean(axis=0) * 100.0


def average_target_rank(ranks: np.ndarray) -> np.ndarray:
    """Mean 1-based target rank per round (lower is better)."""
    array = _check_ranks(ranks)
    if array.shape[0] == 0:
        return np.full(array.shape[1], np.nan)
    return array.mean(axis=0, dtype=np.float64)


def best_rank_so_far(ranks: np.ndarray) -> np.ndarray:
    """Running minimum of the rank over rounds, per dialog."""
    return np.minimum.accumulate(_check_ranks(ranks), axis=1)


def bri_per_dialog(ranks: np.ndarray) -> np.ndarray:
    """PlugIR's Best log Rank Integral of each dialog (see the module docstring); needs >= 2 rounds."""
    array = _check_ranks(ranks)
    if array.shape[1] < 2:
        raise ValueError("BRI integrates over rounds: it needs at least two rounds (0 and 1)")
    log_best = np.log(best_rank_so_far(array).astype(np.float64))  # log(0-based best + 1)
    intervals = array.shape[1] - 1
    return ((log_best[:, :-1] + log_best[:, 1:]) / 2.0).sum(axis=1) / intervals


def bri(ranks: np.ndarray) -> float:
    """PlugIR's BRI, the mean of :func:`bri_per_dialog` over dialogs (lower is better)."""
    per_dialog = bri_per_dialog(ranks)
    return float(per_dialog.mean()) if len(per_dialog) else float("nan")


# --------------------------------------------------------------------------------------------------------
# questions
# --------------------------------------------------------------------------------------------------------

_NOT_WORD = re.compile(r"[^\w]+")


def normalise_question(question: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: "Is it RED?" and "is it red" compare equal."""
    return " ".join(_NOT_WORD.sub(" ", question.lower()).split())


def repeated_questions(questions: Sequence[str]) -> int:
    """How many questions of one dialog repeat an earlier question of it (after :func:`normalise_question`)."""
    seen: set[str] = set()
    repeats = 0
    for question in questions:
        key = normalise_question(question)
        if not key:
            continue
        if key in seen:
            repeats += 1
        seen.add(key)
    return repeats


def average_repeated_questions(dialogs_questions: Sequence[Sequence[str]]) -> float:
    """Mean number of repeated questions per dialog."""
    if not dialogs_questions:
        return float("nan")
    return float(np.mean([repeated_questions(questions) for questions in dialogs_questions]))
