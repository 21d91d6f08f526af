"""The supported model families: how each one turns tokens / pixels into (unnormalised) embeddings."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from retriever_service.models.base import RetrievalModel

CHATIR_BLIP_MAX_TOKENS = 200
"""ChatIR tokenises dialogs for BLIP with ``max_length=200`` (BLIP's text encoder itself allows 512)."""

_HUGE = 1_000_000  # tokenizers without a limit report ~1e30 as model_max_length


def config_text_positions(config: Any) -> int | None:
    text_config = getattr(config, "text_config", None) or config
    value = getattr(text_config, "max_position_embeddings", None)
    return int(value) if value else None


def _pooled(output: Any) -> torch.Tensor:
    """``get_*_features`` return a tensor in transformers 4 and an output with ``pooler_output`` in 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class BlipRetrievalModel(RetrievalModel):
    """``BlipForImageTextRetrieval``, contrastive (ITC) path as in ChatIR: CLS token of the unimodal text
    encoder -> ``text_proj``; CLS of the ViT -> ``vision_proj``."""

    family = "blip"
    model_types: ClassVar[tuple[str, ...]] = ("blip",)
    text_input_names = ("input_ids", "attention_mask")

    @staticmethod
    def model_class() -> type:
        from transformers import BlipForImageTextRetrieval

        return BlipForImageTextRetrieval

    @staticmethod
    def default_max_text_tokens(config: Any, tokenizer: Any) -> int:
        positions = config_text_positions(config) or CHATIR_BLIP_MAX_TOKENS
        return min(CHATIR_BLIP_MAX_TOKENS, positions)

    def _embedding_dim(self) -> int:
        return int(self.model.text_proj.out_features)

    def _text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.model.text_encoder(
            input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask"), return_dict=True
        )
        return self.model.text_proj(output.last_hidden_state[:, 0, :])

    def _image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        output = self.model.vision_model(pixel_values=pixel_values, return_dict=True)
        return self.model.vision_proj(output.last_hidden_state[:, 0, :])

    def _text_modules(self) -> list[torch.nn.Module]:
        return [self.model.text_encoder, self.model.text_proj]

    def text_parameters(self) -> list[torch.nn.Parameter]:
        # The cross-attention layers only serve the ITM head: they get no gradient from the dialog encoder.
        skip = {id(p) for name, p in self.model.text_encoder.named_parameters() if ".crossattention." in name}
        return [p for p in super().text_parameters() if id(p) not in skip]


class _FeatureModel(RetrievalModel):
    """Models with ``get_text_features`` / ``get_image_features`` (projected, unnormalised)."""

    def _text_embeddings(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return _pooled(self.model.get_text_features(**tokens))

    def _image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _pooled(self.model.get_image_features(pixel_values=pixel_values))


class ClipRetrievalModel(_FeatureModel):
    family = "clip"
    model_types: ClassVar[tuple[str, ...]] = ("clip",)

    @staticmethod
    def model_class() -> type:
        from transformers import CLIPModel

        return CLIPModel

    @staticmethod
    def default_max_text_tokens(config: Any, tokenizer: Any) -> int:
        return config_text_positions(config) or 77

    def _embedding_dim(self) -> int:
        return int(self.model.text_projection.out_features)

    def _text_modules(self) -> list[torch.nn.Module]:
        return [self.model.text_model, self.model.text_projection]


class SiglipRetrievalModel(_FeatureModel):
    """SigLIP: texts padded to the full length and no attention mask, exactly as it was trained
    (the text tower pools the last position)."""

    family = "siglip"
    model_types: ClassVar[tuple[str, ...]] = ("siglip",)
    text_pad_to_max_length = True
    text_input_names = ("input_ids",)

    @staticmethod
    def model_class() -> type:
        from transformers import SiglipModel

        return SiglipModel

    @staticmethod
    def default_max_text_tokens(config: Any, tokenizer: Any) -> int:
        return config_text_positions(config) or 64

    def _embedding_dim(self) -> int:
        return int(self.model.text_model.head.out_features)

    def _text_modules(self) -> list[torch.nn.Module]:
        return [self.model.text_model]


class DualEncoderRetrievalModel(_FeatureModel):
    """``VisionTextDualEncoderModel``: any vision tower + any text tower, each with a linear projection."""

    family = "dual_encoder"
    model_types: ClassVar[tuple[str, ...]] = ("vision-text-dual-encoder",)

    @staticmethod
    def model_class() -> type:
        from transformers import VisionTextDualEncoderModel

        return VisionTextDualEncoderModel

    @staticmethod
    def default_max_text_tokens(config: Any, tokenizer: Any) -> int:
        limits = [config_text_positions(config) or _HUGE]
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        if tokenizer_limit and tokenizer_limit < _HUGE:
            limits.append(int(tokenizer_limit))
        limit = min(limits)
        return limit if limit < _HUGE else 512

    def _embedding_dim(self) -> int:
        return int(self.model.text_projection.out_features)

    def _text_modules(self) -> list[torch.nn.Module]:
        return [self.model.text_model, self.model.text_projection]


FAMILIES: tuple[type[RetrievalModel], ...] = (
    BlipRetrievalModel,
    ClipRetrievalModel,
    SiglipRetrievalModel,
    DualEncoderRetrievalModel,
)


def family_for_model_type(model_type: str) -> type[RetrievalModel] | None:
    for family in FAMILIES:
        if model_type in family.model_types:  # type: ignore[attr-defined]
            return family
    return None


def family_by_name(name: str) -> type[RetrievalModel] | None:
    return next((family for family in FAMILIES if family.family == name), None)
