"""Training configuration: the loop (``LoopConfig``) and a dialog-encoder run (``TrainConfig``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.losses import DEFAULT_KS
from training.masking import MaskingConfig

RESUME_SENSITIVE_FIELDS = (
    "dialogs",
    "images",
    "model",
    "loss",
    "batch_size",
    "grad_accum",
    "lr",
    "lr_decay",
    "min_lr",
    "weight_decay",
    "max_grad_norm",
    "masking",
    "max_round",
    "hard_negatives",
    "random_negatives",
    "ks",
    "tau1",
    "temperature",
    "learnable_temperature",
    "seed",
    "train_text_layers",
    "max_steps_per_epoch",
    "limit",
)
"""Fields that must not change between a run and its resumption (``epochs`` may grow)."""


class LoopConfig(BaseModel):
    """The training loop: AdamW with ``lr_e = max(lr * lr_decay**e, min_lr)`` for epoch e, accumulation,
    precision, seeds, logs and checkpoints."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(5e-5, gt=0)
    lr_decay: float = Field(0.93, gt=0, le=1, description="multiplies the learning rate after every epoch")
    min_lr: float = Field(1e-6, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping; 0 = off")
    epochs: int = Field(10, ge=1)
    grad_accum: int = Field(1, ge=1, description="split each batch into this many micro-batches")
    seed: int = 0
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="mixed precision on CUDA (auto: bf16 where supported, else fp16); CPU runs fp32"
    )
    log_every: int = Field(10, ge=1, description="write the training loss to log.jsonl every N steps")
    checkpoint_every_steps: int | None = Field(None, ge=1, description="also checkpoint inside epochs")
    keep_checkpoints: int = Field(2, ge=0, description="epoch checkpoints kept (0 = all)")
    progress: bool = True


class TrainConfig(LoopConfig):
    """A ChatIR dialog-encoder training run (``chatir train``)."""

    dialogs: Path = Field(..., description="training dialogs, ChatIR JSON [{'img', 'dialog'}]")
    images: Path = Field(..., description="root the training dialogs' 'img' paths are relative to")
    val_dialogs: Path | None = None
    val_images: Path | None = None
    val_corpus: Path | None = Field(
        None, description="list file of the validation corpus (default: every image under val_images)"
    )
    val_limit: int | None = Field(500, ge=1, description="validate on at most this many dialogs")
    model: str = Field(..., description="hub id, local folder or 'starter'")
    out: Path

    loss: Literal["recall", "infonce"] = "recall"
    ks: tuple[int, ...] = DEFAULT_KS
    tau1: float = Field(0.01, gt=0, description="Recall@K surrogate: rank-smoothing temperature")
    temperature: float = Field(0.07, gt=0, description="InfoNCE temperature (initial value when learnable)")
    learnable_temperature: bool = False

    batch_size: int = Field(64, ge=2, description="dialogs per optimizer step")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cut epochs short (quick runs, CI)")
    limit: int | None = Field(None, ge=2, description="use only the first N training dialogs")
    max_round: int = Field(10, ge=0, description="D_i with i uniform in 0..max_round (bounded by the dialog)")
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    hard_negatives: int = Field(0, ge=0, description="per target, its nearest cached images join the gallery")
    random_negatives: int = Field(0, ge=0, description="random cached images added to each batch's gallery")
    train_text_layers: int | None = Field(
        None,
        ge=0,
        description="train only the top N transformer layers of the text tower (+ pooler and projection); "
        "None = the whole text side",
    )

    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    cache_dir: Path | None = Field(
        None, description="image-embedding cache (default CHATIR_HOME/cache/embeddings)"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if (self.val_dialogs is None) != (self.val_images is None):
            raise ValueError("give both val_dialogs and val_images, or neither")
        if self.batch_size < self.grad_accum:
            raise ValueError("batch_size must be at least grad_accum")
        return self

    def fingerprint(self) -> str:
        """Hash of the fields a resumed run must share with the original."""
        data = self.model_dump(mode="json", include=set(RESUME_SENSITIVE_FIELDS))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
