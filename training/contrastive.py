"""Image-caption contrastive training (CLIP-style), the first stage of the starter model.

The vision tower and both projections learn; the text tower stays frozen, so each caption's pooled text
feature (before the text projection) is computed once, and so are the images' ``pixel_values``. Each epoch
pairs every training image with one of its caption variants (drawn from (seed, epoch)), and the symmetric
InfoNCE loss with a learnable temperature aligns the two sides over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from evaluation.metrics import rank_of_targets
from training.dialog_task import freeze_all_but
from training.losses import InfoNCE

if TYPE_CHECKING:
    from retriever_service.models import RetrievalModel

_TRAINED_PREFIXES = ("vision_model.", "visual_projection.", "text_projection.")


@dataclass(frozen=True)
class CaptionBatch:
    images: np.ndarray  # (n,) indices into the training images
    captions: np.ndarray  # (m,) indices into the unique caption features
    targets: np.ndarray  # (m,) position in ``images`` of each caption's image


def pixel_values_of(
    model: RetrievalModel, paths: Sequence[Path], *, progress: bool, desc: str
) -> torch.Tensor:
    """``pixel_values`` of every image, on the CPU in fp16 (fed to the model batch by batch)."""
    from PIL import Image

    chunks = []
    for start in tqdm(range(0, len(paths), 256), desc=desc, unit="batch", disable=not progress):
        images = []
        for path in paths[start : start + 256]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        chunks.append(model.preprocess_images(images).to("cpu", torch.float16))
    return torch.cat(chunks)


@torch.no_grad()
def pooled_text_features(
    model: RetrievalModel, texts: Sequence[str], *, batch_size: int = 128, progress: bool, desc: str
) -> torch.Tensor:
    """The frozen text tower's pooled output (input of the text projection) for each text, float32 on CPU."""
    text_model = model.model.text_model
    text_model.eval()
    out = torch.empty(len(texts), model.model.text_projection.in_features)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress):
        chunk = order[start : start + batch_size]
        tokens = model.tokenize([texts[i] for i in chunk])
        out[chunk] = text_model(**tokens).pooler_output.float().cpu()
    return out


class ImageCaptionTask:
    """Trains the vision tower and the projections of a dual encoder on (image, caption) pairs."""

    def __init__(
        self,
        model: RetrievalModel,
        image_paths: Sequence[Path],
        captions: Sequence[Sequence[str]],
        *,
        batch_size: int,
        seed: int,
        captions_per_step: int | None = None,
        temperature: float = 0.07,
        val_image_paths: Sequence[Path] = (),
        val_captions: Sequence[str] = (),
        attributes: np.ndarray | None = None,
        attribute_weight: float = 0.0,
        progress: bool = True,
    ) -> None:
        if len(image_paths) != len(captions) or not all(captions):
            raise ValueError("every training image needs at least one caption")
        self.model = model
        self.batch_size = batch_size
        self.seed = seed
        self.captions_per_step = captions_per_step
        self.variants = [len(c) for c in captions]
        unique = sorted({text for variants in captions for text in variants})
        position = {text: i for i, text in enumerate(unique)}
        self.caption_index = [[position[t] for t in variants] for variants in captions]
        self.pixels = pixel_values_of(model, image_paths, progress=progress, desc="preparing training images")
        self.text_features = pooled_text_features(model, unique, progress=progress, desc="encoding captions")
        self.val_pixels = (
            pixel_values_of(model, val_image_paths, progress=progress, desc="preparing validation images")
            if val_image_paths
            else None
        )
        self.val_text_features = (
            pooled_text_features(
                model, list(val_captions), progress=progress, desc="encoding validation captions"
            )
            if val_captions
            else None
        )
        self.loss_fn = InfoNCE(temperature=temperature, learnable=True, symmetric=True).to(model.device)
        self._trained = [(n, p) for n, p in model.model.named_parameters() if n.startswith(_TRAINED_PREFIXES)]
        freeze_all_but(model.model, self._trained)
        self._named = self._trained + [(f"loss.{n}", p) for n, p in self.loss_fn.named_parameters()]
        self.attributes: torch.Tensor | None = None
        self.attribute_head: torch.nn.Linear | None = None
        self.attribute_weight = attribute_weight
        if attributes is not None and attribute_weight > 0:
            if len(attributes) != len(image_paths):
                raise ValueError("one attribute vector per training image")
            self.attributes = torch.as_tensor(np.asarray(attributes, dtype=np.float32))
            width = model.model.visual_projection.in_features
            generator = torch.Generator().manual_seed(seed)
            self.attribute_head = torch.nn.Linear(width, self.attributes.shape[1]).to(model.device)
            with torch.no_grad():
                self.attribute_head.weight.normal_(0.0, 0.02, generator=generator)
                self.attribute_head.bias.zero_()
            self._named += [(f"attribute_head.{n}", p) for n, p in self.attribute_head.named_parameters()]

    def named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return self._named

    def n_batches(self, epoch: int) -> int:
        return max(1, len(self.pixels) // self.batch_size)

    def batch(self, epoch: int, step: int) -> CaptionBatch:
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.pixels))
        images = order[step * self.batch_size : (step + 1) * self.batch_size]
        return self._captions_for(images, np.random.default_rng([self.seed, epoch, step, 8]))

    def _captions_for(self, images: np.ndarray, rng: np.random.Generator) -> CaptionBatch:
        captions, targets = [], []
        for position, image in enumerate(images):
            variants = self.caption_index[image]
            if self.captions_per_step and self.captions_per_step < len(variants):
                variants = [
                    variants[i] for i in rng.choice(len(variants), self.captions_per_step, replace=False)
                ]
            captions += variants
            targets += [position] * len(variants)
        return CaptionBatch(
            images=images,
            captions=np.asarray(captions, dtype=np.int64),
            targets=np.asarray(targets, dtype=np.int64),
        )

    def micro_batches(self, batch: CaptionBatch, n: int) -> list[tuple[CaptionBatch, float]]:
        parts = []
        for chunk in np.array_split(np.arange(len(batch.images)), min(n, len(batch.images))):
            if not len(chunk):
                continue
            keep = np.isin(batch.targets, chunk)
            remap = {int(old): new for new, old in enumerate(chunk)}
            targets = np.asarray([remap[int(t)] for t in batch.targets[keep]], dtype=np.int64)
            parts.append(
                (
                    CaptionBatch(images=batch.images[chunk], captions=batch.captions[keep], targets=targets),
                    len(chunk) / len(batch.images),
                )
            )
        return parts

    def _pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.model.vision_model(
            pixel_values=pixels.to(self.model.device, self.model.dtype)
        ).pooler_output

    def _image_vectors(self, pixels: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self._pooled(pixels) if pooled is None else pooled
        return F.normalize(self.model.model.visual_projection(pooled).float(), dim=-1)

    def _text_vectors(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.model.text_projection(features.to(self.model.device)).float(), dim=-1)

    def loss(self, micro: CaptionBatch) -> torch.Tensor:
        index = torch.from_numpy(micro.images)
        pooled = self._pooled(self.pixels[index])
        images = self._image_vectors(self.pixels[index], pooled)
        texts = self._text_vectors(self.text_features[torch.from_numpy(micro.captions)])
        loss = self.loss_fn(texts @ images.T, torch.from_numpy(micro.targets).to(images.device))
        if self.attribute_head is not None and self.attributes is not None:
            logits = self.attribute_head(pooled.float())
            targets = self.attributes[index].to(logits.device)
            # summed over attributes, averaged over images
            aux = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(index)
            loss = loss + self.attribute_weight * aux
        return loss

    def train_mode(self, training: bool) -> None:
        self.model.model.train(training)
        if self.attribute_head is not None:
            self.attribute_head.train(training)
        self.model.model.text_model.eval()  # frozen: no dropout

    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, Any]:
        """Caption -> image retrieval on the validation images (one caption each)."""
        if self.val_pixels is None or self.val_text_features is None:
            return {"temperature": round(self.loss_fn.temperature, 4)}
        images = torch.cat([self._image_vectors(chunk) for chunk in self.val_pixels.split(256)]).cpu().numpy()
        texts = self._text_vectors(self.val_text_features).cpu().numpy()
        ranks = rank_of_targets(texts, images, np.arange(len(texts)))
        return {
            "caption_r@1": round(float(np.mean(ranks <= 1) * 100), 2),
            "caption_r@10": round(float(np.mean(ranks <= 10) * 100), 2),
            "caption_median_rank": float(np.median(ranks)),
            "corpus": len(images),
            "temperature": round(self.loss_fn.temperature, 4),
        }

    def save_model(self, folder: Path, info: dict[str, Any]) -> None:
        self.model.extra_metadata["training"] = {"recipe": "starter-image-caption", **info}
        self.model.save(folder)
