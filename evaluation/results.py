"""The result of evaluating one system (a dialog file, or a questioner in live mode): metrics per round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from evaluation import metrics

DEFAULT_KS = (1, 5, 10)


class SystemResult(BaseModel):
    """Per-round ChatIR metrics of one system; ``hits``/``recall`` map K to a list over rounds 0..R (percent)."""

    system: str
    mode: Literal["fixed", "live"]
    model_id: str
    n_dialogs: int
    rounds: list[int]
    hits: dict[int, list[float]] = Field(description="ChatIR Hits@K (cumulative), percent, per round")
    recall: dict[int, list[float]] = Field(description="Recall@K (target in top K at that round), percent")
    atr: list[float] = Field(description="average 1-based target rank per round")
    bri: float = Field(description="PlugIR Best log Rank Integral (lower is better)")
    repeated_questions: float | None = Field(None, description="mean repeated questions per dialog")
    timings_s: dict[str, float] = Field(default_factory=dict)
    details: dict[str, str | int | float] = Field(default_factory=dict)

    @classmethod
    def from_ranks(
        cls,
        system: str,
        ranks: np.ndarray,
        *,
        mode: Literal["fixed", "live"],
        model_id: str,
        ks: Sequence[int] = DEFAULT_KS,
        questions: Sequence[Sequence[str]] | None = None,
        timings_s: dict[str, float] | None = None,
        details: dict[str, str | int | float] | None = None,
    ) -> SystemResult:
        ranks = np.asarray(ranks)
        ks = sorted({int(k) for k in ks} | {10})  # Hits@10 is the protocol's headline number: always there
        return cls(
            system=system,
            mode=mode,
            model_id=model_id,
            n_dialogs=int(ranks.shape[0]),
            rounds=list(range(ranks.shape[1])),
            hits={k: metrics.hits_at_k(ranks, k).tolist() for k in ks},
            recall={k: metrics.recall_at_k(ranks, k).tolist() for k in ks},
            atr=metrics.average_target_rank(ranks).tolist(),
            bri=metrics.bri(ranks),
            repeated_questions=None if questions is None else metrics.average_repeated_questions(questions),
            timings_s=dict(timings_s or {}),
            details=dict(details or {}),
        )
