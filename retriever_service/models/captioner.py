"""Captions at index time: an image-to-text model that describes each image in a sentence.

Optional (``CHATIR_CAPTIONER``: a hub id or folder; unset = off). The caption is stored with the image, sent
with its hits, and shown to the LLM questioner where the image has no useful text of its own (most assets have
no more than a file name), as PlugIR grounds its questions in captions of the top candidates. BLIP captioning
models load as ``BlipForConditionalGeneration``; any other image-text-to-text model through
``AutoModelForImageTextToText``. Loaded like the retriever: a folder, or a hub id from the local cache (or
downloaded where downloads are allowed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from chatir.errors import ModelNotAvailableError
from chatir.settings import Settings

log = logging.getLogger(__name__)

MAX_CAPTION_CHARS = 300


class Captioner:
    """``caption(images)``: one short sentence per image (greedy decoding, batched)."""

    def __init__(
        self, name_or_path: str, *, settings: Settings, max_new_tokens: int = 30, batch_size: int = 8
    ) -> None:
        from transformers import AutoConfig, AutoProcessor

        from retriever_service.models.loader import resolve_device, resolve_source

        try:
            source, local_only = resolve_source(name_or_path, settings)
        except ModelNotAvailableError as error:
            raise ModelNotAvailableError(
                f"the captioner {name_or_path!r} (CHATIR_CAPTIONER) is not available: give a folder written by "
                "save_pretrained, or a hub id in the local Hugging Face cache; unset CHATIR_CAPTIONER for no captions"
            ) from error
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
            self.processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
            if config.model_type == "blip":
                from transformers import BlipForConditionalGeneration

                self.model: Any = BlipForConditionalGeneration.from_pretrained(
                    source, local_files_only=local_only
                )
            else:
                from transformers import AutoModelForImageTextToText

                self.model = AutoModelForImageTextToText.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as error:
            raise ModelNotAvailableError(
                f"the captioner {name_or_path!r} (CHATIR_CAPTIONER) cannot be loaded: {str(error).splitlines()[0]}"
            ) from error
        self.name = str(name_or_path)
        self.device = resolve_device(settings.device)
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per image, in order."""
        captions: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            texts = self.processor.batch_decode(output, skip_special_tokens=True)
            captions += [" ".join(text.split())[:MAX_CAPTION_CHARS] for text in texts]
        return captions

    def __repr__(self) -> str:
        return f"Captioner({self.name!r}, device={self.device})"


def load_captioner(settings: Settings) -> Captioner | None:
    """The configured captioner, or None when ``CHATIR_CAPTIONER`` is unset."""
    return Captioner(settings.captioner, settings=settings) if settings.captioner else None
