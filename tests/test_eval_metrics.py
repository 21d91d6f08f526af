"""ChatIR protocol metrics against hand-computed values and a line-by-line transcription of the reference code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation.metrics import (
    average_repeated_questions,
    average_target_rank,
    best_rank_so_far,
    bri,
    bri_per_dialog,
    first_hit_round,
    hits_at_k,
    rank_of_targets,
    recall_at_k,
    repeated_questions,
)

# --------------------------------------------------------------------------------------------------------
# Transcriptions of the reference code (levymsn/ChatIR eval.py; Saehyung-Lee/PlugIR eval.py), loops and all.
# ``target_recall`` is what their ``_get_recalls`` returns: the 0-based position of the target in
# ``argsort(scores, descending=True)``, rounds concatenated (round-major), exactly as ``torch.cat(hits_results)``.
# --------------------------------------------------------------------------------------------------------


def chatir_get_first_hitting_time(target_recall, hitting_recall, num_rounds):
    target_recalls = target_recall.view(num_rounds, -1).T
    hits = target_recalls < hitting_recall
    final_hits = torch.inf * torch.ones(target_recalls.shape[0])
    hitting_times = []
    for ro_i in range(num_rounds):
        rh = hits[:, ro_i]
        final_hits[rh] = torch.min(final_hits[rh], torch.ones(final_hits[rh].shape) * ro_i)
        hitting_times.append(final_hits.clone())
    return torch.stack(hitting_times)


def chatir_cumulative_hits_per_round(target_recall, hitting_recall, num_rounds):
    ht_times = chatir_get_first_hitting_time(target_recall, hitting_recall, num_rounds)
    return (ht_times < torch.inf).sum(dim=-1) * 100 / ht_times[0].shape[0]


def plugir_recall_per_round(target_recall, hitting_recall, num_rounds):
    target_recalls = target_recall.view(num_rounds, -1).T
    hits = target_recalls < hitting_recall
    temp_hitting_times = []
    for ro_i in range(num_rounds):
        temp_hits = torch.inf * torch.ones(target_recalls.shape[0])
        rh = hits[:, ro_i]
        temp_hits[rh] = torch.min(temp_hits[rh], torch.ones(temp_hits[rh].shape) * ro_i)
        temp_hitting_times.append(temp_hits)
    temp_ht_times = torch.stack(temp_hitting_times)
    return (temp_ht_times < torch.inf).sum(dim=-1) * 100 / temp_ht_times[0].shape[0]


def plugir_bri(per_round_recalls, num_rounds):
    min_ranks = []
    for dl in range(num_rounds):
        dialog_recalls = per_round_recalls[dl]
        if dl == 0:
            min_ranks.append(dialog_recalls)
        else:
            min_ranks.append(torch.minimum(min_ranks[dl - 1], dialog_recalls))
    bri_value = 0
    for dl in range(num_rounds - 1):
        bri_value += ((torch.log(min_ranks[dl] + 1.0) + torch.log(min_ranks[dl + 1] + 1.0)) / 2).mean()
    bri_value /= num_rounds - 1
    return float(bri_value)


def chatir_target_recall(scores, target_ids):
    """ChatIR's ``_get_recalls`` on one batch of scores (stable argsort: ties by corpus index)."""
    arg_ranks = torch.sort(scores, descending=True, stable=True, dim=1).indices.long()
    return ((arg_ranks - target_ids.unsqueeze(1)) == 0).nonzero()[:, 1]


def reference_inputs(ranks: np.ndarray):
    """Our 1-based (dialogs x rounds) ranks as the reference code holds them."""
    zero_based = torch.tensor(ranks - 1, dtype=torch.float32)
    per_round = [zero_based[:, r] for r in range(ranks.shape[1])]
    return torch.cat(per_round), per_round


# --------------------------------------------------------------------------------------------------------
# Hand-computed case. 1-based ranks of 4 dialogs over 3 rounds, K = 2:
#   A [5, 1, 3]  a hit at round 1, then a miss      B [1, 1, 1]  a hit at round 0
#   C [7, 8, 9]  never hit                          D [3, 2, 2]  a hit at round 1, kept
# --------------------------------------------------------------------------------------------------------

HAND = np.array([[5, 1, 3], [1, 1, 1], [7, 8, 9], [3, 2, 2]])


def test_hits_at_k_by_hand():
    # round 0: only B; round 1: A, B, D; round 2: A still counts (first hit at round 1), C never.
    assert hits_at_k(HAND, k=2).tolist() == [25.0, 75.0, 75.0]
    assert hits_at_k(HAND, k=10).tolist() == [100.0, 100.0, 100.0]
    assert hits_at_k(HAND, k=1).tolist() == [25.0, 50.0, 50.0]


def test_recall_at_k_by_hand():
    # not cumulative: A drops out at round 2.
    assert recall_at_k(HAND, k=2).tolist() == [25.0, 75.0, 50.0]
    assert recall_at_k(HAND, k=1).tolist() == [25.0, 50.0, 25.0]


def test_atr_by_hand():
    assert average_target_rank(HAND).tolist() == [4.0, 3.0, 3.75]


def test_first_hit_round_by_hand():
    assert first_hit_round(HAND, k=2).tolist() == [1, 0, -1, 1]


def test_bri_by_hand():
    # best rank so far: A [5,1,1], B [1,1,1], C [7,7,7], D [3,2,2]; trapezoid over 2 intervals, / 2.
    assert best_rank_so_far(HAND).tolist() == [[5, 1, 1], [1, 1, 1], [7, 7, 7], [3, 2, 2]]
    a = ((math.log(5) + 0) / 2 + 0) / 2
    b = 0.0
    c = ((math.log(7) + math.log(7)) / 2 + (math.log(7) + math.log(7)) / 2) / 2
    d = ((math.log(3) + math.log(2)) / 2 + (math.log(2) + math.log(2)) / 2) / 2
    assert bri_per_dialog(HAND) == pytest.approx([a, b, c, d])
    assert bri(HAND) == pytest.approx((a + b + c + d) / 4)


def test_bri_perfect_and_needs_two_rounds():
    assert bri(np.ones((3, 11), dtype=int)) == 0.0
    with pytest.raises(ValueError, match="two rounds"):
        bri(np.ones((3, 1), dtype=int))


def test_metrics_match_reference_transcription_by_hand():
    flat, per_round = reference_inputs(HAND)
    for k in (1, 2, 3, 10):
        expected = chatir_cumulative_hits_per_round(flat, k, HAND.shape[1]).numpy()
        assert hits_at_k(HAND, k) == pytest.approx(expected)
        assert recall_at_k(HAND, k) == pytest.approx(plugir_recall_per_round(flat, k, HAND.shape[1]).numpy())
    assert bri(HAND) == pytest.approx(plugir_bri(per_round, HAND.shape[1]), rel=1e-6)


def test_metrics_match_reference_transcription_random():
    rng = np.random.default_rng(7)
    ranks = rng.integers(1, 60, size=(200, 11))
    ranks[:20] = 1  # hit at round 0
    flat, per_round = reference_inputs(ranks)
    for k in (1, 5, 10, 50):
        assert hits_at_k(ranks, k) == pytest.approx(chatir_cumulative_hits_per_round(flat, k, 11).numpy())
        assert recall_at_k(ranks, k) == pytest.approx(plugir_recall_per_round(flat, k, 11).numpy())
    assert bri(ranks) == pytest.approx(plugir_bri(per_round, 11), rel=1e-5)
    assert average_target_rank(ranks) == pytest.approx(ranks.mean(axis=0))


def test_hits_are_cumulative_and_bounded_by_recall():
    rng = np.random.default_rng(1)
    ranks = rng.integers(1, 30, size=(100, 11))
    hits = hits_at_k(ranks, 10)
    assert np.all(np.diff(hits) >= 0)
    assert np.all(hits >= recall_at_k(ranks, 10))


def test_ranks_are_validated():
    with pytest.raises(ValueError, match="1-based"):
        hits_at_k(np.array([[0, 1]]))
    with pytest.raises(ValueError, match="n_dialogs, n_rounds"):
        hits_at_k(np.array([1, 2]))


# --------------------------------------------------------------------------------------------------------
# rank_of_targets
# --------------------------------------------------------------------------------------------------------

# Scores against q = [1, 0]: c0 1.0, c1 1.0, c2 0.0, c3 0.6, c4 1.0 -- a three-way tie at the top.
TIE_CORPUS = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8], [1, 0]], dtype=np.float32)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("index", [1, 2, 5, 4, 3]),  # equal scores: the smaller corpus index ranks first
        ("optimistic", [1, 1, 5, 4, 1]),
        ("pessimistic", [3, 3, 5, 4, 3]),
    ],
)
def test_rank_of_targets_ties_by_hand(policy, expected):
    queries = np.tile(np.array([[1, 0]], dtype=np.float32), (5, 1))
    ranks = rank_of_targets(queries, TIE_CORPUS, np.arange(5), ties=policy, chunk_size=2)
    assert ranks.tolist() == expected


def test_rank_of_targets_matches_chatir_argsort():
    # Integer-valued vectors give many exact ties; ChatIR's argsort position (stable) + 1 must equal ours.
    gen = torch.Generator().manual_seed(3)
    corpus = torch.randint(-2, 3, (700, 8), generator=gen).float()
    queries = torch.randint(-2, 3, (90, 8), generator=gen).float()
    targets = torch.randint(0, 700, (90,), generator=gen)
    expected = chatir_target_recall(queries @ corpus.T, targets).numpy() + 1
    ours = rank_of_targets(queries.numpy(), corpus.numpy(), targets.numpy(), chunk_size=32)
    assert ours.tolist() == expected.tolist()
    # whatever order torch's unstable default argsort picks, it lies between the optimistic and pessimistic ranks
    arg_ranks = torch.argsort(queries @ corpus.T, descending=True, dim=1)
    unstable = ((arg_ranks - targets.unsqueeze(1)) == 0).nonzero()[:, 1].numpy() + 1
    low = rank_of_targets(queries.numpy(), corpus.numpy(), targets.numpy(), ties="optimistic")
    high = rank_of_targets(queries.numpy(), corpus.numpy(), targets.numpy(), ties="pessimistic")
    assert np.all(low <= unstable) and np.all(unstable <= high)


def test_rank_of_targets_real_valued_matches_full_sort():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(3000, 16)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[:50] + 0.3 * rng.normal(size=(50, 16)).astype(np.float32)
    targets = np.arange(50)
    ranks = rank_of_targets(queries, corpus, targets, chunk_size=7)
    order = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")
    expected = np.array([np.nonzero(order[i] == targets[i])[0][0] + 1 for i in range(50)])
    assert ranks.tolist() == expected.tolist()


def test_rank_of_targets_rejects_bad_input():
    with pytest.raises(ValueError, match="dimension"):
        rank_of_targets(np.ones((2, 3)), np.ones((4, 2)), [0, 1])
    with pytest.raises(ValueError, match="target indices"):
        rank_of_targets(np.ones((2, 2)), np.ones((4, 2)), [0, 9])
    with pytest.raises(ValueError, match="2 queries but 1"):
        rank_of_targets(np.ones((2, 2)), np.ones((4, 2)), [0])


# --------------------------------------------------------------------------------------------------------
# repeated questions
# --------------------------------------------------------------------------------------------------------


def test_repeated_questions():
    assert repeated_questions(["Is it red?", "how many dogs?", "is it RED", "Is it red?"]) == 2
    assert repeated_questions(["what colour is the car?", "what colour is the sky?"]) == 0
    assert repeated_questions([]) == 0
    assert average_repeated_questions([["a?", "a?"], ["b?"], ["c?", "d?", "c"]]) == pytest.approx(2 / 3)


def test_accelerator_counting_matches_cpu_counting():
    from evaluation.metrics import _count_ahead_numpy, _count_ahead_torch

    gen = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 4, (40, 300), generator=gen).float()
    targets = torch.randint(0, 300, (40,), generator=gen)
    for policy in ("index", "optimistic", "pessimistic"):
        on_torch = _count_ahead_torch(scores, targets, policy).numpy()
        on_numpy = _count_ahead_numpy(scores.numpy(), targets.numpy(), policy)
        assert on_torch.tolist() == on_numpy.tolist()
