"""The Recall@K surrogate against brute-force ranks, and InfoNCE against its definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation.metrics import rank_of_targets
from training.losses import InfoNCE, RecallAtKSurrogate, build_loss, smoothed_ranks


def brute_force_ranks(scores: torch.Tensor, targets: torch.Tensor) -> list[int]:
    """1 + number of gallery items scoring strictly higher than the positive, by a plain loop."""
    ranks = []
    for row, target in zip(scores.tolist(), targets.tolist(), strict=True):
        ranks.append(1 + sum(1 for j, s in enumerate(row) if j != target and s > row[target]))
    return ranks


def true_recall(ranks: list[int], k: int, gallery: int) -> float:
    return float(np.mean([r <= min(k, gallery) for r in ranks]))


HAND_MADE = [
    # (scores, targets, expected ranks)
    ([[0.9, 0.1, 0.2], [0.3, 0.8, 0.5], [0.7, 0.6, 0.1]], [0, 1, 2], [1, 1, 3]),
    ([[0.1, 0.2, 0.3, 0.4, 0.5]], [0], [5]),
    ([[0.5, 0.4, 0.3, 0.2, 0.1], [0.5, 0.4, 0.3, 0.2, 0.1]], [2, 4], [3, 5]),
]


@pytest.mark.parametrize("scores,targets,expected", HAND_MADE)
def test_smoothed_ranks_become_true_ranks_as_temperature_vanishes(scores, targets, expected):
    scores_t = torch.tensor(scores, dtype=torch.float64)
    targets_t = torch.tensor(targets)
    assert brute_force_ranks(scores_t, targets_t) == expected
    ranks = smoothed_ranks(scores_t, targets_t, tau1=1e-6)
    assert ranks.tolist() == pytest.approx(expected, abs=1e-9)
    # a warm temperature gives a smooth value strictly between neighbouring ranks
    warm = smoothed_ranks(scores_t, targets_t, tau1=0.1)
    assert not torch.allclose(warm, ranks)


def test_smoothed_ranks_match_the_evaluation_ranks_on_random_cases():
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(
        torch.randn(40, 16, generator=generator, dtype=torch.float64), dim=1
    )
    gallery = torch.nn.functional.normalize(
        torch.randn(30, 16, generator=generator, dtype=torch.float64), dim=1
    )
    targets = torch.randint(0, 30, (40,), generator=generator)
    scores = queries @ gallery.T
    expected = rank_of_targets(queries.numpy(), gallery.numpy(), targets.numpy())
    assert brute_force_ranks(scores, targets) == expected.tolist()
    assert smoothed_ranks(scores, targets, tau1=1e-7).tolist() == pytest.approx(expected.tolist(), abs=1e-6)


def test_surrogate_equals_true_recall_in_the_zero_temperature_limit():
    generator = torch.Generator().manual_seed(1)
    for gallery_size in (3, 10, 40):  # 3 and 10 clamp the larger Ks to the gallery
        scores = torch.randn(64, gallery_size, generator=generator, dtype=torch.float64)
        targets = torch.randint(0, gallery_size, (64,), generator=generator)
        ranks = brute_force_ranks(scores, targets)
        # exact Recall@K with the step moved to K + 1/2
        exact = RecallAtKSurrogate(tau1=1e-7, tau2=1e-7, boundary_margin=0.5)
        per_k = exact.recall_per_k(scores, targets).mean(dim=0)
        for column, k in enumerate(exact.ks):
            assert per_k[column].item() == pytest.approx(true_recall(ranks, k, gallery_size), abs=1e-9)
        expected_loss = 1 - np.mean([true_recall(ranks, k, gallery_size) for k in exact.ks])
        assert exact(scores, targets).item() == pytest.approx(expected_loss, abs=1e-9)
        # the paper's form counts a positive exactly at rank K as half a hit
        paper = RecallAtKSurrogate(tau1=1e-7, tau2=1e-7)
        per_k = paper.recall_per_k(scores, targets).mean(dim=0)
        for column, k in enumerate(paper.ks):
            k_eff = min(k, gallery_size)
            expected = np.mean([1.0 if r < k_eff else 0.5 if r == k_eff else 0.0 for r in ranks])
            assert per_k[column].item() == pytest.approx(expected, abs=1e-9)


def test_default_surrogate_matches_the_reference_formula_by_hand():
    # one query, positive at column 0 with score 0.5; negatives 0.52 (above) and 0.40 (below)
    scores = torch.tensor([[0.5, 0.52, 0.40]], dtype=torch.float64)
    loss = RecallAtKSurrogate()  # tau1 = 0.01, tau2 = K, K clamped to 3
    rank = 1 + 1 / (1 + math.exp(-2.0)) + 1 / (1 + math.exp(10.0))
    recalls = [1 / (1 + math.exp(-(min(k, 3) - rank) / k)) for k in (1, 2, 4, 8, 16)]
    assert smoothed_ranks(scores, torch.tensor([0])).item() == pytest.approx(rank)
    assert loss(scores, torch.tensor([0])).item() == pytest.approx(1 - np.mean(recalls))


def test_surrogate_gradient_raises_the_positive_and_lowers_the_hard_negative():
    scores = torch.tensor([[0.50, 0.52, 0.10]], requires_grad=True)
    RecallAtKSurrogate()(scores, torch.tensor([0])).backward()
    grad = scores.grad[0]
    assert grad[0] < 0  # descending the loss raises the positive's score
    assert grad[1] > 0  # and lowers the negative ranked above it
    assert abs(grad[2]) < abs(grad[1])  # a negative far below hardly matters


def test_infonce_is_cross_entropy_over_the_gallery():
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(6, 9, generator=generator)
    targets = torch.tensor([0, 3, 3, 8, 1, 2])
    loss = InfoNCE(temperature=0.05)(scores, targets)
    logits = scores / 0.05
    by_hand = -(logits[range(6), targets] - torch.logsumexp(logits, dim=1)).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_symmetric_infonce_treats_queries_sharing_an_image_as_positives():
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.7]])
    targets = torch.tensor([0, 0, 1])
    loss = InfoNCE(temperature=1.0, symmetric=True)(scores, targets)
    text_to_image = torch.nn.functional.cross_entropy(scores, targets)
    columns = scores.T.log_softmax(dim=1)
    image_to_text = -(torch.logsumexp(columns[0, :2], dim=0) + columns[1, 2]) / 2
    assert loss.item() == pytest.approx(((text_to_image + image_to_text) / 2).item(), rel=1e-5)


def test_learnable_temperature_gets_a_gradient_and_build_loss_selects():
    loss = build_loss("infonce", learnable_temperature=True, temperature=0.1)
    scores = torch.tensor([[0.3, 0.2], [0.1, 0.4]])
    loss(scores, torch.tensor([0, 1])).backward()
    assert loss.log_scale.grad is not None
    assert isinstance(build_loss("recall"), RecallAtKSurrogate)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("triplet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="targets must have shape"):
        RecallAtKSurrogate()(scores, torch.tensor([0]))
