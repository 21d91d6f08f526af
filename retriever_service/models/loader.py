"""``load_model``: hub id, local folder or "starter" -> a ready :class:`RetrievalModel`.

The family is chosen from the model's config (``model_type``). Nothing is downloaded unless the name is a
hub id that is not in the local Hugging Face cache, downloads are allowed (``HF_HUB_OFFLINE`` unset) and the
hub answers; every failure is one :class:`ModelNotAvailableError` that names the model and says how to
provide it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from chatir.errors import ModelNotAvailableError
from chatir.settings import STARTER_MODEL, Settings, get_settings
from retriever_service.models.base import CHATIR_META_FILE, RetrievalModel
from retriever_service.models.dialog_text import TEXT_POOLINGS
from retriever_service.models.families import FAMILIES, config_text_positions, family_for_model_type

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
"""How long to wait for the hub's TCP port before declaring it unreachable (instead of minutes of retries)."""

_IGNORED_MISSING = ("itm_head.", "logit_scale", "logit_bias", "position_ids")
"""Weights a checkpoint may lack without affecting the embeddings."""


def how_to_provide(name: str) -> str:
    return (
        "To provide it: set CHATIR_MODEL to a local folder written by save_pretrained (or by "
        "`chatir convert-checkpoint`); or, on a machine with network, run `chatir models pull "
        f"{name}` (add `--to DIR` to get a folder you can copy here); or use CHATIR_MODEL=starter for the "
        "project's own offline model (it only knows the demo's world of coloured shapes)."
    )


def _not_available(name: str, reason: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(f"Model '{name}' is not available: {reason}. {how_to_provide(name)}")


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------- devices
def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelNotAvailableError(
                f"Device '{spec}' was requested but CUDA is not available here; use CHATIR_DEVICE=auto or cpu."
            )
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise ModelNotAvailableError(f"Unknown device '{spec}'; use auto, cpu, cuda or cuda:N.")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA, fp32 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.float32


# ---------------------------------------------------------------------------------------- sources
def _downloads_allowed() -> bool:
    from huggingface_hub import constants

    return not constants.HF_HUB_OFFLINE


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """A quick TCP probe of the hub endpoint (huggingface_hub would otherwise retry for ~30 s)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "/", "~")) or "\\" in name:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _in_hub_cache(repo_id: str) -> bool:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 -- any failure means "not usable from the cache"
        return False
    return True


def _starter_folder(settings: Settings) -> Path:
    """The assembled starter, re-assembled first when the shipped weights or the assembly changed (cheap check)."""
    folder = settings.starter_dir
    try:
        from retriever_service.models.starter import ensure_starter_model
    except ImportError as error:
        if (folder / "config.json").is_file():
            return folder
        raise ModelNotAvailableError(
            f"The starter model is not built yet ({folder}) and its builder cannot be imported "
            f"({_first_line(error)}). Reinstall the project, or set CHATIR_MODEL to another model."
        ) from error
    return Path(ensure_starter_model(settings))


def resolve_source(name: str, settings: Settings) -> tuple[str, bool]:
    """Where to load ``name`` from: ``(local folder or hub id, local_files_only)``."""
    if name == STARTER_MODEL:
        return str(_starter_folder(settings)), True
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and (path / "config.json").is_file():
            return str(path), True
        if path.is_dir():
            raise _not_available(
                name, f"the folder {path} has no config.json (it is not a save_pretrained folder)"
            )
        raise _not_available(
            name,
            f"{path} is a file, not a model folder (to import a ChatIR .ckpt run "
            "`chatir convert-checkpoint SRC DST` and use DST)",
        )
    if not _is_hub_id(name):
        raise _not_available(name, f"there is no folder {path}")
    if _in_hub_cache(name):
        return name, True
    if not _downloads_allowed():
        raise _not_available(
            name,
            f"there is no local folder '{name}', it is not in the Hugging Face cache, and downloads are "
            "off (HF_HUB_OFFLINE=1)",
        )
    if not _hub_reachable():
        from huggingface_hub import constants

        raise _not_available(
            name,
            f"there is no local folder '{name}', it is not in the Hugging Face cache, and the hub "
            f"({constants.ENDPOINT}) cannot be reached",
        )
    return name, False


def _read_meta(source: str) -> dict[str, Any]:
    meta_file = Path(source) / CHATIR_META_FILE
    if not meta_file.is_file():
        return {}
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable %s: %s", meta_file, error)
        return {}
    return meta if isinstance(meta, dict) else {}


# ---------------------------------------------------------------------------------------- loading
def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    device: str = "auto",
    settings: Settings | None = None,
    dtype: torch.dtype | None = None,
) -> RetrievalModel:
    """Load a BLIP / CLIP / SigLIP / VisionTextDualEncoder model as a :class:`RetrievalModel`.

    ``name_or_path``: a hub id, a local folder, or ``"starter"`` (built on first use). ``device="auto"``
    defers to ``settings.device`` (itself "auto" by default: CUDA when available). ``dtype`` defaults to
    fp16 on CUDA and fp32 on CPU (pass ``torch.float32`` to train on a GPU).
    Raises :class:`ModelNotAvailableError` (one clear message) when it cannot be loaded.
    """
    from transformers import AutoConfig

    from retriever_service.models import scene_code

    scene_code.register()  # the starter's own vision tower type, for any dual encoder that uses it
    settings = settings or get_settings()
    name = os.fspath(name_or_path)
    source, local_only = resolve_source(name, settings)

    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    except Exception as error:
        raise _not_available(name, f"its config cannot be read ({_first_line(error)})") from error
    family = family_for_model_type(config.model_type)
    if family is None:
        supported = ", ".join(t for f in FAMILIES for t in f.model_types)  # type: ignore[attr-defined]
        raise ModelNotAvailableError(
            f"Model '{name}' has model_type '{config.model_type}', which is not an image-text retrieval "
            f"model this service supports ({supported})."
        )

    torch_device = resolve_device(settings.device if device == "auto" else device)
    torch_dtype = dtype or default_dtype(torch_device)
    model = _load_weights(name, family, source, local_only, torch_dtype)
    tokenizer, image_processor = _load_processors(name, source, local_only, config)
    model.to(torch_device).eval()

    meta = _read_meta(source) if local_only and Path(source).is_dir() else {}
    max_text_tokens = int(meta.get("max_text_tokens") or family.default_max_text_tokens(config, tokenizer))  # type: ignore[attr-defined]
    if settings.max_text_tokens is not None:
        positions = config_text_positions(config)
        if positions is not None and settings.max_text_tokens > positions:
            raise ModelNotAvailableError(
                f"CHATIR_MAX_TEXT_TOKENS={settings.max_text_tokens} is longer than model '{name}' can read "
                f"({positions} positions); set it to {positions} or less, or unset it."
            )
        max_text_tokens = settings.max_text_tokens
    truncation = settings.truncation
    if "truncation" not in settings.model_fields_set and meta.get("truncation") in ("keep_caption", "tail"):
        truncation = meta["truncation"]  # how this checkpoint was trained, unless the user chose explicitly
    pooling = meta.get("text_pooling", "joined")
    if pooling not in TEXT_POOLINGS:
        raise ModelNotAvailableError(
            f"Model '{name}' asks for text pooling {pooling!r} in its {CHATIR_META_FILE}, which this version "
            f"does not know ({', '.join(TEXT_POOLINGS)})."
        )
    extra = {
        key: value
        for key, value in meta.items()
        if key not in ("family", "max_text_tokens", "dim", "text_pooling")
    }
    loaded = family(
        model_id=name,
        model=model,
        tokenizer=tokenizer,
        image_processor=image_processor,
        max_text_tokens=max_text_tokens,
        batch_size=settings.batch_size,
        separator=settings.dialog_separator,
        truncation=truncation,
        text_pooling=pooling,
        extra_metadata=extra,
    )
    logger.info("loaded %r", loaded)
    return loaded


def _load_weights(
    name: str, family: type, source: str, local_only: bool, dtype: torch.dtype
) -> torch.nn.Module:
    model_class = family.model_class()
    try:
        model, info = model_class.from_pretrained(
            source, local_files_only=local_only, dtype=dtype, output_loading_info=True
        )
    except Exception as error:
        raise _not_available(
            name, f"its weights cannot be loaded as {model_class.__name__} ({_first_line(error)})"
        ) from error
    missing = [key for key in info.get("missing_keys", ()) if not any(p in key for p in _IGNORED_MISSING)]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else "")
        raise _not_available(
            name,
            f"the checkpoint lacks {len(missing)} weights of {model_class.__name__} ({shown}); it is probably "
            "another architecture",
        )
    return model


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def _load_processors(name: str, source: str, local_only: bool, config: Any) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoTokenizer

    add_tokenizer = (
        "add the tokenizer files it was trained with to the folder "
        "(e.g. `chatir convert-checkpoint SRC DST --processor PATH`)"
    )
    folder = Path(source)
    if folder.is_dir() and not any((folder / file).is_file() for file in _TOKENIZER_FILES):
        # transformers 5 would silently build an empty tokenizer here
        raise _not_available(name, f"the folder has no tokenizer; {add_tokenizer}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except Exception as error:
        raise _not_available(
            name, f"its tokenizer cannot be loaded ({_first_line(error)}); {add_tokenizer}"
        ) from error
    text_config = getattr(config, "text_config", None) or config
    vocab_size = int(getattr(text_config, "vocab_size", 0) or 0)
    if vocab_size and len(tokenizer) < min(100, vocab_size // 2):
        raise _not_available(
            name,
            f"its tokenizer has only {len(tokenizer)} tokens for a {vocab_size}-token model; {add_tokenizer}",
        )
    try:
        image_processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
    except Exception as error:
        raise _not_available(
            name,
            f"its image processor cannot be loaded ({_first_line(error)}); add preprocessor_config.json",
        ) from error
    return tokenizer, image_processor
