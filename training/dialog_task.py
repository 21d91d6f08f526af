"""ChatIR's training of the dialog encoder F: the text side learns to embed partial dialogs next to their
target image's (frozen, cached) embedding, with the Recall@K surrogate or InfoNCE over each batch's gallery.

``train_dialog_encoder(config)`` is what ``chatir train`` runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evaluation.data import ImageCorpus, TargetDialog, load_chatir_dialogs
from evaluation.embeddings import corpus_embeddings
from evaluation.harness import evaluate_fixed_dialogs
from training.config import TrainConfig
from training.data import Batch, DialogTrainingSet, nearest_neighbours, parts_as_dialog
from training.losses import build_loss
from training.trainer import Trainer, TrainingError, TrainingSummary, torch_threads

if TYPE_CHECKING:
    from chatir.settings import Settings
    from retriever_service.models import RetrievalModel

_LAYER_INDEX = re.compile(r"\.(?:layer|layers|block|blocks)\.(\d+)\.")
_EMBEDDINGS = re.compile(r"(^|\.)embeddings\.")


def text_parameters_by_name(
    model: RetrievalModel, top_layers: int | None = None
) -> list[tuple[str, torch.nn.Parameter]]:
    """The text side's parameters with their names in ``model.model``.

    ``top_layers=N`` keeps only the top N transformer layers of the text tower and what comes after them
    (pooler, final norm, projection); the embeddings and lower layers stay frozen.
    """
    wanted = {id(p) for p in model.text_parameters()}
    named = [(name, p) for name, p in model.model.named_parameters() if id(p) in wanted]
    if top_layers is None:
        return named
    indices = [int(m.group(1)) for name, _ in named if (m := _LAYER_INDEX.search(name))]
    if not indices:
        raise TrainingError("train_text_layers: the text tower has no numbered layers to choose from")
    first_trained = max(indices) + 1 - top_layers
    kept = []
    for name, parameter in named:
        match = _LAYER_INDEX.search(name)
        if match:
            if int(match.group(1)) >= first_trained:
                kept.append((name, parameter))
        elif not _EMBEDDINGS.search(name):
            kept.append((name, parameter))
    return kept


def freeze_all_but(model: torch.nn.Module, trained: list[tuple[str, torch.nn.Parameter]]) -> None:
    keep = {id(p) for _, p in trained}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)


@dataclass
class DialogValidation:
    """Hits@K per round of fixed validation dialogs against a corpus (ChatIR's protocol)."""

    dialogs: list[TargetDialog]
    corpus: ImageCorpus
    corpus_vectors: Callable[[], np.ndarray]
    rounds: int

    def run(self, model: RetrievalModel) -> dict[str, Any]:
        result, _ = evaluate_fixed_dialogs(
            model,
            self.dialogs,
            self.corpus,
            name="val",
            rounds=self.rounds,
            corpus_vectors=self.corpus_vectors(),
            progress=False,
        )
        hits10 = [round(h, 2) for h in result.hits[10]]
        return {
            "hits@10": hits10,
            "hits@10_mean": round(float(np.mean(hits10)), 2),
            "hits@1": [round(h, 2) for h in result.hits[1]],
            "corpus": len(self.corpus),
            "dialogs": len(self.dialogs),
            "chance@10": round(min(100.0, 1000.0 / len(self.corpus)), 2),
        }


def validation_rounds(dialogs: list[TargetDialog], wanted: int = 10) -> int:
    return min(wanted, min(len(d.dialog.rounds) for d in dialogs))


class DialogTask:
    """The dialog encoder against cached image embeddings (see the module docstring)."""

    def __init__(
        self,
        model: RetrievalModel,
        data: DialogTrainingSet,
        image_vectors: np.ndarray,
        config: TrainConfig,
        validation: DialogValidation | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.config = config
        self.validation = validation
        self.loss_fn = build_loss(
            config.loss,
            ks=config.ks,
            tau1=config.tau1,
            temperature=config.temperature,
            learnable_temperature=config.learnable_temperature,
        ).to(model.device)
        self.image_vectors = torch.from_numpy(np.ascontiguousarray(image_vectors, dtype=np.float32)).to(
            model.device
        )
        self.neighbours = (
            nearest_neighbours(np.asarray(image_vectors, dtype=np.float32), config.hard_negatives)
            if config.hard_negatives
            else None
        )
        self._trained = text_parameters_by_name(model, config.train_text_layers)
        freeze_all_but(model.model, self._trained)
        self._named = self._trained + [(f"loss.{n}", p) for n, p in self.loss_fn.named_parameters()]

    def named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return self._named

    def n_batches(self, epoch: int) -> int:
        return self.data.n_batches(self.config.batch_size, self.config.max_steps_per_epoch)

    def batch(self, epoch: int, step: int) -> Batch:
        return self.data.batch(
            epoch,
            step,
            self.config.batch_size,
            neighbours=self.neighbours,
            random_negatives=self.config.random_negatives,
        )

    def micro_batches(self, batch: Batch, n: int) -> list[tuple[Batch, float]]:
        # Every micro-batch is scored against the whole batch's gallery: with a frozen image side the loss of
        # a query depends only on its own scores, so accumulation gives exactly the full-batch gradient.
        # Samples are grouped by length first, so each micro-batch pads little (D_0 and D_10 differ ~8x).
        by_length = np.argsort([sum(len(part) for part in s.parts) for s in batch.samples], kind="stable")
        chunks = np.array_split(by_length, min(n, len(batch.samples)))
        return [
            (
                Batch(
                    samples=tuple(batch.samples[i] for i in chunk),
                    gallery=batch.gallery,
                    targets=batch.targets[chunk],
                ),
                len(chunk) / len(batch.samples),
            )
            for chunk in chunks
            if len(chunk)
        ]

    def texts(self, batch: Batch) -> list[str]:
        return [self.model.dialog_text(parts_as_dialog(sample.parts)) for sample in batch.samples]

    def loss(self, micro: Batch) -> torch.Tensor:
        queries = self.model.text_features(**self.model.tokenize(self.texts(micro)))
        gallery = self.image_vectors[torch.from_numpy(micro.gallery).to(self.model.device)]
        scores = queries @ gallery.T
        return self.loss_fn(scores, torch.from_numpy(micro.targets).to(self.model.device))

    def train_mode(self, training: bool) -> None:
        self.model.model.train(training)

    def validate(self, epoch: int) -> dict[str, Any]:
        if self.validation is None:
            return {}
        self.model.model.eval()
        self.model.clear_text_cache()  # the weights changed since the last validation
        return self.validation.run(self.model)

    def save_model(self, folder: Path, info: dict[str, Any]) -> None:
        self.model.extra_metadata["training"] = {
            "recipe": "chatir-dialog",
            "loss": self.config.loss,
            "masking": self.config.masking.model_dump(),
            "base_model": self.config.model,
            **info,
        }
        self.model.save(folder)


# ------------------------------------------------------------------------------------------------ the run
def _cache_root(config: TrainConfig, settings: Settings) -> Path:
    return Path(config.cache_dir) if config.cache_dir else settings.home / "cache" / "embeddings"


def load_validation(
    config: TrainConfig, model: RetrievalModel, cache_root: Path | None
) -> DialogValidation | None:
    if config.val_dialogs is None or config.val_images is None:
        return None
    dialogs = load_chatir_dialogs(config.val_dialogs, limit=config.val_limit)
    corpus = ImageCorpus.open(config.val_images, config.val_corpus)
    corpus.target_indices([d.img for d in dialogs])  # fail now, not after the first epoch
    vectors: dict[str, np.ndarray] = {}

    def corpus_vectors() -> np.ndarray:  # the image side is frozen: embed once
        if "v" not in vectors:
            vectors["v"] = corpus_embeddings(
                model, corpus, cache_root, batch_size=model.batch_size, progress=config.progress
            )
        return vectors["v"]

    return DialogValidation(
        dialogs=dialogs, corpus=corpus, corpus_vectors=corpus_vectors, rounds=validation_rounds(dialogs)
    )


def train_dialog_encoder(
    config: TrainConfig,
    settings: Settings | None = None,
    *,
    resume: bool = False,
    on_step: Callable[[Trainer, int, int], None] | None = None,
) -> TrainingSummary:
    """Run ``chatir train``: load the model, cache image embeddings, train the text side, checkpoint."""
    from chatir.settings import get_settings

    settings = settings or get_settings()
    with torch_threads(config.num_threads):
        return _train(config, settings, resume=resume, on_step=on_step)


def _train(config: TrainConfig, settings: Settings, *, resume: bool, on_step) -> TrainingSummary:
    from retriever_service.models import load_model

    model = load_model(config.model, device=config.device, settings=settings, dtype=torch.float32)
    data = DialogTrainingSet.from_files(
        config.dialogs,
        config.images,
        limit=config.limit,
        masking=config.masking,
        max_round=config.max_round,
        seed=config.seed,
    )
    cache_root = _cache_root(config, settings)
    model.model.eval()
    image_vectors = corpus_embeddings(
        model, data.corpus, cache_root, batch_size=model.batch_size, progress=config.progress
    )
    validation = load_validation(config, model, cache_root)
    task = DialogTask(model, data, image_vectors, config, validation)
    trainer = Trainer(
        task,
        config,
        config.out,
        device=model.device,
        fingerprint=config.fingerprint(),
        config_json=config.model_dump(mode="json"),
        on_step=on_step,
        description="dialogs",
    )
    return trainer.fit(resume=resume)
