"""Training losses for the dialog encoder: the Recall@K surrogate and InfoNCE.

Every loss takes ``scores`` of shape ``(n_queries, n_gallery)`` -- cosine similarities between L2-normalised
query (dialog) and gallery (image) embeddings -- and ``targets`` of shape ``(n_queries,)``, the gallery column
of each query's one positive. Callers deduplicate the gallery so that each query has exactly one positive
(several queries may share it); every other column is a negative.

The Recall@K surrogate follows Patel, Tolias and Matas, "Recall@k Surrogate Loss with Large Batches and
Similarity Mixup" (CVPR 2022) and their reference code (``yash0307/RecallatK_surrogate``, ``src/losses.py``):

- the rank of the positive is smoothed with a sigmoid of temperature ``tau1`` (0.01):
  ``rank~ = 1 + sum_{j != t} sigmoid((s_j - s_t) / tau1)``;
- "rank <= K" is smoothed with a second sigmoid, of temperature ``tau2`` (the reference code uses ``tau2 = K``
  for each K, its ``k_temperatures`` default 1, 2, 4, 8, 16): ``recall~@K = sigmoid((K - rank~) / tau2)``;
  with one positive the ``min(K, |P|)`` normalisation of the paper is 1;
- the loss is ``1 - mean over K and queries of recall~@K``, K in {1, 2, 4, 8, 16}; a K larger than the
  gallery is clamped to the gallery size, as the reference code clamps it to the batch size.

As both temperatures go to 0, ``rank~`` becomes the true 1-based rank (ties excluded) and ``recall~@K``
becomes 1 for rank < K, 0 for rank > K and 1/2 at rank == K (the paper's boundary). ``boundary_margin=0.5``
moves the step to ``K + 1/2`` so that the limit is exactly Recall@K; the default 0 is the paper's form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

LossName = Literal["recall", "infonce"]

DEFAULT_KS: tuple[int, ...] = (1, 2, 4, 8, 16)
EXPONENT_CLAMP = 50.0
"""The reference code clamps the sigmoid's exponent to [-50, 50] for stability; so do we."""


def tempered_sigmoid(values: torch.Tensor, temperature: float) -> torch.Tensor:
    """``sigmoid(values / temperature)`` with the exponent clamped like the reference implementation."""
    return torch.sigmoid(torch.clamp(values / temperature, -EXPONENT_CLAMP, EXPONENT_CLAMP))


def _at_least_float32(values: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 at least (scores may come out of fp16/bf16 autocast)."""
    return values if values.dtype == torch.float64 else values.float()


def _check(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.ndim != 2:
        raise ValueError(f"scores must be (n_queries, n_gallery), got shape {tuple(scores.shape)}")
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"targets must have shape ({scores.shape[0]},), got {tuple(targets.shape)}")
    if scores.shape[1] < 1:
        raise ValueError("the gallery is empty")


def smoothed_ranks(scores: torch.Tensor, targets: torch.Tensor, tau1: float = 0.01) -> torch.Tensor:
    """Sigmoid-smoothed 1-based rank of each query's positive among its gallery, shape ``(n_queries,)``."""
    _check(scores, targets)
    positive = scores.gather(1, targets[:, None])  # (n, 1)
    above = tempered_sigmoid(scores - positive, tau1)  # (n, m): ~1 where a gallery item scores higher
    not_self = torch.ones_like(above).scatter_(1, targets[:, None], 0.0)
    return 1.0 + (above * not_self).sum(dim=1)


class RecallAtKSurrogate(nn.Module):
    """Patel et al.'s smooth Recall@K loss averaged over ``ks`` (see the module docstring)."""

    def __init__(
        self,
        ks: Sequence[int] = DEFAULT_KS,
        tau1: float = 0.01,
        tau2: Sequence[float] | float | None = None,
        boundary_margin: float = 0.0,
    ) -> None:
        super().__init__()
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"ks must be positive integers, got {list(ks)}")
        if tau1 <= 0:
            raise ValueError("tau1 must be > 0")
        self.ks = tuple(int(k) for k in ks)
        self.tau1 = float(tau1)
        if tau2 is None:  # the reference code's k_temperatures: tau2 = K
            self.tau2 = tuple(float(k) for k in self.ks)
        elif isinstance(tau2, (int, float)):
            self.tau2 = (float(tau2),) * len(self.ks)
        else:
            if len(tau2) != len(self.ks):
                raise ValueError("give one tau2 per K")
            self.tau2 = tuple(float(t) for t in tau2)
        if any(t <= 0 for t in self.tau2):
            raise ValueError("tau2 must be > 0")
        self.boundary_margin = float(boundary_margin)

    def recall_per_k(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Smoothed Recall@K of each query, shape ``(n_queries, len(ks))``."""
        ranks = smoothed_ranks(scores, targets, self.tau1)
        n_gallery = scores.shape[1]
        columns = []
        for k, tau2 in zip(self.ks, self.tau2, strict=True):
            k_eff = min(k, n_gallery)
            columns.append(tempered_sigmoid(k_eff + self.boundary_margin - ranks, tau2))
        return torch.stack(columns, dim=1)

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.recall_per_k(_at_least_float32(scores), targets).mean()


class InfoNCE(nn.Module):
    """Softmax cross-entropy over the gallery with temperature ``temperature`` (fixed or learnable).

    ``symmetric=True`` adds the image->text direction (CLIP's loss): each gallery item that is some query's
    positive must pick out its queries among all queries (several queries sharing an image are all
    positives: the loss is ``-log`` of their total softmax mass). Gallery items that no query points at
    (hard or random negatives) only take part in the text->image direction.
    """

    def __init__(self, temperature: float = 0.07, learnable: bool = False, symmetric: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.symmetric = symmetric

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_scale.detach()))

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check(scores, targets)
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()  # CLIP's cap on the logit scale
        logits = _at_least_float32(scores) * scale
        loss = F.cross_entropy(logits, targets)
        if not self.symmetric:
            return loss
        used = torch.unique(targets)
        positive = targets[None, :] == used[:, None]  # (n_used, n_queries)
        image_logits = logits.t()[used]  # (n_used, n_queries)
        log_prob = image_logits.log_softmax(dim=1)
        image_loss = -torch.logsumexp(log_prob.masked_fill(~positive, float("-inf")), dim=1).mean()
        return (loss + image_loss) / 2.0


def build_loss(
    name: LossName,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    tau1: float = 0.01,
    tau2: Sequence[float] | float | None = None,
    temperature: float = 0.07,
    learnable_temperature: bool = False,
    symmetric: bool = False,
) -> nn.Module:
    """The loss called ``name``: ``"recall"`` (Recall@K surrogate) or ``"infonce"``."""
    if name == "recall":
        return RecallAtKSurrogate(ks=ks, tau1=tau1, tau2=tau2)
    if name == "infonce":
        return InfoNCE(temperature=temperature, learnable=learnable_temperature, symmetric=symmetric)
    raise ValueError(f"unknown loss {name!r}: choose 'recall' or 'infonce'")
