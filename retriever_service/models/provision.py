"""Provisioning a model: fetch it from the Hugging Face hub (``chatir models pull``) and check that a folder is a
model this service can serve (``chatir models check``).

``pull_model`` downloads only what :func:`~retriever_service.models.load_model` reads (config, weights, tokenizer,
image processor; safetensors when the repository has them, else PyTorch ``.bin``), with huggingface_hub's progress
bars, into the Hugging Face cache (``HF_HOME``; ``CHATIR_MODEL=<hub id>`` then loads it offline) or into a folder
(``--to DIR``; ``CHATIR_MODEL=DIR``). A download that stops half-way resumes where it stopped when run again.

``check_model`` loads a model through the real loader and reports its family, embedding size, text window and a
checksum of its weight files (the same bytes give the same checksum on every machine: compare it after copying a
model into an air-gapped host or a container image).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel

from chatir.errors import ModelNotAvailableError
from chatir.settings import Settings, get_settings

RECOMMENDED_MODEL = "Salesforce/blip-itm-base-coco"
"""The production default: BLIP (ChatIR's backbone) fine-tuned for retrieval on COCO."""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_CONFIG_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]
"""Config, tokenizer, image processor and chatir.json files."""


class ModelReport(BaseModel):
    """What ``chatir models check`` prints."""

    model: str
    family: str
    dim: int
    max_text_tokens: int
    checksum: str
    weight_files: list[str]
    weight_bytes: int


def weights_checksum(folder: str | os.PathLike[str]) -> tuple[str, list[str], int]:
    """``sha256:<hex>`` over the weight files of ``folder`` (each file's relative path and bytes, in path order),
    the files, and their total size. Raises :class:`ModelNotAvailableError` when it holds no weights."""
    root = Path(folder)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and ".cache" not in p.relative_to(root).parts
    )
    if not files:
        raise ModelNotAvailableError(f"{root} holds no weight files ({', '.join(WEIGHT_SUFFIXES)}).")
    digest = hashlib.sha256()
    total = 0
    for path in files:
        name = path.relative_to(root).as_posix()
        digest.update(name.encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest(), [p.relative_to(root).as_posix() for p in files], total


def resolved_folder(name_or_path: str, settings: Settings | None = None) -> Path:
    """The local folder ``load_model(name_or_path)`` reads (a hub id: its snapshot in the Hugging Face cache)."""
    from retriever_service.models.loader import resolve_source

    settings = settings or get_settings()
    source, local_only = resolve_source(name_or_path, settings)
    if local_only and Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as error:
        raise ModelNotAvailableError(
            f"Model '{name_or_path}' is not on this machine: run `chatir models pull {name_or_path}` first."
        ) from error


def check_model(name_or_path: str, *, settings: Settings | None = None, device: str = "cpu") -> ModelReport:
    """Load ``name_or_path`` through :func:`~retriever_service.models.load_model` (never downloads) and report it."""
    from retriever_service.models.loader import load_model

    settings = settings or get_settings()
    folder = resolved_folder(name_or_path, settings)
    model = load_model(str(folder), device=device, settings=settings)
    checksum, files, size = weights_checksum(folder)
    return ModelReport(
        model=name_or_path,
        family=model.family,
        dim=model.dim,
        max_text_tokens=model.max_text_tokens,
        checksum=checksum,
        weight_files=files,
        weight_bytes=size,
    )


def _weight_patterns(repo_id: str, revision: str | None) -> list[str]:
    """safetensors when the repository has them (no pickles), else PyTorch ``.bin`` files."""
    from huggingface_hub import HfApi

    names = HfApi().list_repo_files(repo_id, revision=revision)
    if any(name.endswith(".safetensors") for name in names):
        return ["*.safetensors", "*.safetensors.index.json"]
    return ["*.bin", "*.bin.index.json"]


def pull_model(
    repo_id: str,
    *,
    to: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``repo_id`` (the files ``load_model`` needs) into the Hugging Face cache, or into ``to``; returns
    the folder. Raises :class:`ModelNotAvailableError` with the reason (offline, unknown repository, ...)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if constants.HF_HUB_OFFLINE:
        raise ModelNotAvailableError(
            f"Cannot pull '{repo_id}': downloads are off (HF_HUB_OFFLINE=1). Unset it on a machine with network."
        )
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        patterns = [*_CONFIG_PATTERNS, *_weight_patterns(repo_id, revision)]
        folder = snapshot_download(
            repo_id,
            revision=revision,
            local_dir=str(Path(to).expanduser()) if to is not None else None,
            allow_patterns=patterns,
        )
    except (RepositoryNotFoundError, GatedRepoError) as error:
        raise ModelNotAvailableError(
            f"The hub ({constants.ENDPOINT}) has no model '{repo_id}' you may read (a typo, a private or gated "
            f"repository: log in with `hf auth login` or set HF_TOKEN)."
        ) from error
    except RevisionNotFoundError as error:
        raise ModelNotAvailableError(f"Model '{repo_id}' has no revision '{revision}'.") from error
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as error:
        raise ModelNotAvailableError(
            f"Cannot pull '{repo_id}' from {constants.ENDPOINT}: {str(error).splitlines()[0] if str(error) else error}"
        ) from error
    except Exception as error:  # httpx2 connection errors and the like
        raise ModelNotAvailableError(
            f"Cannot pull '{repo_id}' from {constants.ENDPOINT}: {type(error).__name__}: {error}"
        ) from error
    return Path(folder)


__all__ = [
    "RECOMMENDED_MODEL",
    "ModelReport",
    "check_model",
    "pull_model",
    "resolved_folder",
    "weights_checksum",
]
