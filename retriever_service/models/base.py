"""``RetrievalModel``: one image-text model behind the interface every other area uses.

The shared logic lives here (tokenising within the model's limit, batching, L2 normalisation, dialog
text, saving); each model family (``families.py``) only says how to get a text and an image feature.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from cachetools import LRUCache
from PIL import Image

from chatir.dialog import Dialog
from retriever_service.models.dialog_text import (
    TEXT_POOLINGS,
    TextPooling,
    TruncationPolicy,
    dialog_text,
    split_clauses,
)
from retriever_service.models.pixels import FastPixels

CLAUSE_CACHE_SIZE = 32_768
"""Clause vectors a ``clauses`` model keeps (~64 MB at the starter's 502 dimensions): a conversation's earlier
rounds, the questioner's bank rounds and an evaluation's dialogs are each encoded once."""

CHATIR_META_FILE = "chatir.json"
"""Small JSON file next to the weights: ``family``, ``max_text_tokens``, ``dim`` (+ optional ``truncation``,
``text_pooling``)."""


class RetrievalModel:
    """An image encoder and a dialog (text) encoder into one L2-normalised embedding space."""

    family: ClassVar[str]
    """Short name of the model family ("blip", "clip", "siglip", "dual_encoder")."""

    text_pad_to_max_length: ClassVar[bool] = False
    """Pad every text to ``max_text_tokens`` (SigLIP was trained that way)."""

    text_input_names: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    """Which tokenizer outputs the text tower takes."""

    def __init__(
        self,
        *,
        model_id: str,
        model: torch.nn.Module,
        tokenizer: Any,
        image_processor: Any,
        max_text_tokens: int,
        batch_size: int = 32,
        separator: str = ", ",
        truncation: TruncationPolicy = "keep_caption",
        text_pooling: TextPooling = "joined",
        extra_metadata: dict[str, Any] | None = None,
    ) -> None:
        if text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"unknown text pooling {text_pooling!r}; use one of {', '.join(TEXT_POOLINGS)}")
        self.model_id = model_id
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_text_tokens = int(max_text_tokens)
        self.batch_size = int(batch_size)
        self.separator = separator
        self.truncation: TruncationPolicy = truncation
        self.text_pooling: TextPooling = text_pooling
        """``joined``: a dialog text is read in one pass; ``clauses``: each clause alone, the vectors added
        (:func:`~retriever_service.models.dialog_text.split_clauses`)."""
        self._clause_cache: LRUCache[str, np.ndarray] = LRUCache(maxsize=CLAUSE_CACHE_SIZE)
        self._clause_lock = threading.Lock()
        self.extra_metadata: dict[str, Any] = dict(extra_metadata or {})  # kept in chatir.json on save
        parameter = next(model.parameters())
        self.device: torch.device = parameter.device
        self.dtype: torch.dtype = parameter.dtype
        self.dim: int = self._embedding_dim()
        self.fast_pixels: FastPixels | None = FastPixels.for_processor(image_processor)
        """The processor's steps without its per-image NumPy round trips (None: the processor itself)."""

    # ------------------------------------------------------------------ family hooks
    def _embedding_dim(self) -> int:
        raise NotImplementedError

    def _text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unnormalised text embeddings (n, dim)."""
        raise NotImplementedError

    def _image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings (n, dim)."""
        raise NotImplementedError

    def _text_modules(self) -> list[torch.nn.Module]:
        """The text tower and its projection."""
        raise NotImplementedError

    # ------------------------------------------------------------------ differentiable API
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token tensors on ``self.device``, truncated to ``max_text_tokens`` (the end is cut)."""
        encoded = self.tokenizer(
            list(texts),
            padding="max_length" if self.text_pad_to_max_length else "longest",
            truncation=True,
            max_length=self.max_text_tokens,
            return_tensors="pt",
        )
        return {name: encoded[name].to(self.device) for name in self.text_input_names if name in encoded}

    def text_vectors(self, **tokens: torch.Tensor) -> torch.Tensor:
        """(n, dim) projected text embeddings before normalisation, float32 (the ONNX fast path replaces this)."""
        return self._text_embeddings(tokens).float()

    def text_features(self, **tokens: torch.Tensor) -> torch.Tensor:
        """(n, dim) L2-normalised text embeddings; differentiable (use under ``torch.no_grad`` to save memory)."""
        return F.normalize(self.text_vectors(**tokens), dim=-1)

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``pixel_values`` for RGB PIL images, on ``self.device`` in the model's dtype: :class:`FastPixels` where
        it reproduces the image processor (same pixels within 1e-5), else the processor itself."""
        pixel_values = self.fast_pixels(images) if self.fast_pixels is not None else None
        if pixel_values is None:
            rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
            pixel_values = self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        return pixel_values.to(device=self.device, dtype=self.dtype)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, dim) L2-normalised image embeddings."""
        return F.normalize(self._image_embeddings(pixel_values).float(), dim=-1)

    def text_parameters(self) -> list[torch.nn.Parameter]:
        """The trainable text side: text tower + text projection (each parameter once)."""
        seen: set[int] = set()
        parameters = []
        for module in self._text_modules():
            for parameter in module.parameters():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    parameters.append(parameter)
        return parameters

    # ------------------------------------------------------------------ inference API
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings, in batches of ``batch_size`` (most tokens first).

        With ``clauses`` pooling a text's embedding is the sum of its clauses' vectors, normalised; a clause
        is encoded once and kept (:data:`CLAUSE_CACHE_SIZE`, least recently used first out; see
        :meth:`clear_text_cache`)."""
        texts = list(texts)
        if self.text_pooling == "joined":
            return self._normalised(self._encode_vectors(texts))
        clauses = [split_clauses(text, self.separator) or [text] for text in texts]
        distinct = list(dict.fromkeys(clause for parts in clauses for clause in parts))
        with self._clause_lock:
            vectors = {c: self._clause_cache[c] for c in distinct if c in self._clause_cache}
        missing = [c for c in distinct if c not in vectors]
        if missing:
            encoded = dict(zip(missing, self._encode_vectors(missing), strict=True))
            with self._clause_lock:
                self._clause_cache.update(encoded)
            vectors.update(encoded)
        return self._normalised(np.stack([np.sum([vectors[c] for c in parts], axis=0) for parts in clauses]))

    def clear_text_cache(self) -> None:
        """Forget cached clause vectors: call after changing the text weights or the text path."""
        with self._clause_lock:
            self._clause_cache.clear()

    def _encode_vectors(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 unnormalised text vectors, in batches of ``batch_size`` sorted by token count."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = self._longest_first(texts)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                out[chunk] = self.text_vectors(**self.tokenize([texts[i] for i in chunk])).cpu().numpy()
        return out

    def _longest_first(self, texts: list[str]) -> list[int]:
        """Positions of ``texts`` by token count, longest first, so each batch pads little: one unpadded
        tokenizer pass (~0.1 ms a text) saves ~10 % of an evaluation's encoding time (benchmarks/eval_speed.py:
        character counts left 7.7 % of the tokens as padding, token counts 0.7 %). One batch, or padding to a
        fixed length, keeps the given order."""
        if len(texts) <= self.batch_size or self.text_pad_to_max_length:
            return list(range(len(texts)))
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_text_tokens)["input_ids"]
        return sorted(range(len(texts)), key=lambda i: len(ids[i]), reverse=True)

    @staticmethod
    def _normalised(vectors: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings of RGB PIL images, in batches of ``batch_size``."""
        images = list(images)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                out[start : start + len(batch)] = self.encode_pixels(self.preprocess_images(batch))
        return out

    def encode_pixels(self, pixel_values: torch.Tensor) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings of ``preprocess_images`` output (one forward pass)."""
        with torch.inference_mode():
            features = self.image_features(pixel_values.to(device=self.device, dtype=self.dtype))
        return features.cpu().numpy().astype(np.float32, copy=False)

    def dialog_text(self, dialog: Dialog) -> str:
        """The text actually encoded for ``dialog`` (ChatIR's joined form, separator and truncation applied;
        with ``clauses`` pooling nothing is dropped: each clause is read alone, within the token limit)."""
        if self.text_pooling == "clauses":
            return self.separator.join(dialog.parts())
        return dialog_text(
            dialog, self.tokenizer, self.max_text_tokens, separator=self.separator, policy=self.truncation
        )

    def encode_dialogs(self, dialogs: Sequence[Dialog]) -> np.ndarray:
        """(n, dim) float32 embeddings of ``dialog_text(d)`` for each dialog."""
        return self.encode_texts([self.dialog_text(dialog) for dialog in dialogs])

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """What ``chatir.json`` records."""
        pooling = {"text_pooling": self.text_pooling} if self.text_pooling != "joined" else {}
        return {
            **self.extra_metadata,
            **pooling,
            "family": self.family,
            "max_text_tokens": self.max_text_tokens,
            "dim": self.dim,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a folder that ``load_model(path)`` loads back: weights, tokenizer, image processor, chatir.json."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        (folder / CHATIR_META_FILE).write_text(json.dumps(self.metadata(), indent=2) + "\n")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim}, "
            f"max_text_tokens={self.max_text_tokens}, device={self.device}, dtype={self.dtype})"
        )
