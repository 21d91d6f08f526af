"""The starter's joint recipe: both towers trained together on an endless stream of world dialogs.

Each step draws a fresh batch from :mod:`training.world_stream` (new scenes, partial dialogs
D_i with the paraphrase layer and caption masking, near-miss negatives the dialog rules out) and minimises

- text -> image InfoNCE over the batch's gallery (every target and every near miss; learnable temperature),
- image -> text InfoNCE over the batch's targets (weight ``i2t_weight``),
- binary cross-entropy of an attribute head on the vision tower against the scene's ground truth (weight
  ``attribute_weight``; the head is dropped at export).

What is trained: the vision tower and both projections from scratch, the top ``trained_text_layers`` MiniLM
layers and its pooler. Runs on CUDA (bf16 autocast) or the CPU with the same code; the length of a run is a
number of steps and, optionally, a time budget (the learning-rate schedule follows whichever is further
along, so a time-boxed run still ends with a decayed rate). It checkpoints every few minutes outside the
model folder and resumes with ``resume=True`` (new batches after the resumed step; not bit-identical to an
uninterrupted run). ``OUT/log.jsonl`` records loss and validation; ``OUT/trained.safetensors`` holds the
trained parts in fp16, the file the starter ships.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from training.world_stream import StreamConfig, WorldBatchStream

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CHECKPOINT_FILE = "joint-state.pt"
TRAINED_FILE = "trained.safetensors"


class JointStage(BaseModel):
    """Hyper-parameters of the joint recipe (saved with the spec)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(3000, ge=1)
    time_budget_s: float | None = Field(None, gt=0, description="stop (with a decayed rate) after this long")
    stream: StreamConfig = Field(default_factory=StreamConfig)
    lr_vision: float = Field(7e-4, gt=0, description="vision tower, projections, attribute head")
    lr_text: float = Field(1e-4, gt=0, description="trained MiniLM layers and pooler")
    lr_projection: float | None = Field(
        None,
        gt=0,
        description="both projections (None: lr_vision); the code objective needs large weights there",
    )
    warmup_steps: int = Field(150, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    temperature: float = Field(0.05, gt=0, description="initial InfoNCE temperature (learned)")
    i2t_weight: float = Field(0.5, ge=0)
    attribute_weight: float = Field(0.5, ge=0)
    trained_text_layers: int = Field(4, ge=1, le=6)
    objective: Literal["contrastive", "code"] = Field(
        "contrastive",
        description="contrastive: InfoNCE between the towers (+ the attribute head); code: the embedding space "
        "is the scene-attribute code (:func:`world.attributes.scene_attributes`): the image side regresses "
        "the image's +/-1 code, the text side predicts each attribute's log-likelihood ratio given the dialog, so "
        "a dot product ranks images by how well they fit everything said (see :func:`code_losses`)",
    )
    init: Literal["scratch", "staged"] = Field(
        "scratch",
        description="start from random towers, or from the staged recipe's model (the first starter, which has "
        "the same architecture): the vision tower it already trained learns the rest much faster on a CPU",
    )
    grad_clip: float = Field(1.0, gt=0)
    val_images: int = Field(2000, ge=16)
    val_dialogs: int = Field(400, ge=8)
    val_every: int = Field(500, ge=1)
    log_every: int = Field(25, ge=1)
    text_chunk: int = Field(16, ge=1, description="texts encoded together, grouped by length (less padding)")
    checkpoint_every_s: float = Field(180.0, gt=0)


class Schedule(Protocol):
    """What the learning-rate schedule reads of a recipe (JointStage, PerceptionRecipe, TextRecipe)."""

    steps: int
    time_budget_s: float | None
    warmup_steps: int


def _progress(step: int, stage: Schedule, elapsed: float) -> float:
    by_steps = step / stage.steps
    by_time = elapsed / stage.time_budget_s if stage.time_budget_s else 0.0
    return min(1.0, max(by_steps, by_time))


def learning_rate_factor(step: int, stage: Schedule, elapsed: float) -> float:
    """Linear warm-up, then cosine decay to 2 % over the run's progress (steps or time, whichever is ahead)."""
    if step < stage.warmup_steps:
        return (step + 1) / stage.warmup_steps
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * _progress(step, stage, elapsed)))


def normalise_pixels(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> CLIP-normalised pixel values, as the starter's image processor makes them."""
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
    return ((images.float() / 255.0 - mean) / std).to(dtype)


def encode_by_length(
    model, tokens: dict[str, torch.Tensor], chunk: int, *, normalise: bool = True
) -> torch.Tensor:
    """Text features of a padded batch, encoded in length-sorted chunks trimmed to their own longest text.

    Dialogs of 0 to 10 rounds differ several-fold in length; padding all to the longest wastes most of the
    compute. The result equals ``model.text_features(**tokens)`` row for row (``normalise=False``: the
    projected embeddings before L2 normalisation).
    """
    mask = tokens["attention_mask"]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True)
    pieces = []
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        width = int(lengths[rows].max())
        chunk_tokens = {k: v[rows, :width] for k, v in tokens.items()}
        pieces.append(
            model.text_features(**chunk_tokens) if normalise else model._text_embeddings(chunk_tokens)
        )
    features = torch.cat(pieces)
    return features[torch.argsort(order)]


def attribute_prior_logits(world_seed: int, n: int = 4000) -> torch.Tensor:
    """log-odds of every scene attribute over ``n`` scenes of the world (clipped away from 0 and 1)."""
    from world.attributes import scene_attributes
    from world.scene import sample_scene

    frequency = np.stack([scene_attributes(sample_scene(world_seed, i)) for i in range(n)]).mean(axis=0)
    frequency = np.clip(frequency, 1.0 / n, 1.0 - 1.0 / n)
    return torch.from_numpy(np.log(frequency / (1.0 - frequency))).float()


def code_losses(
    text: torch.Tensor,
    image: torch.Tensor,
    attributes: torch.Tensor,
    n_texts: int,
    prior_logits: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(text loss, image loss) of the attribute-code objective.

    Image side: the projected image embedding regresses the scene's code, +1 for every attribute it has and -1
    for every other (mean squared error), so every image embedding has about the same norm. Text side: the
    projected text embedding plus the attributes' prior log-odds is read as the logits of the *target's*
    attributes given the dialog (binary cross-entropy against the target's ground truth). Its optimum is the
    posterior log-odds minus the prior log-odds: the log-likelihood ratio the dialog gives each attribute (about
    0 for what it does not tell, large and signed for what it says or rules out). The dot product of the two is
    then, up to a constant per dialog, the naive-Bayes log-likelihood of the dialog for that image: a cosine
    search ranks images by how well they fit every answer.
    """
    loss_text = F.binary_cross_entropy_with_logits(text + prior_logits, attributes[:n_texts])
    loss_image = F.mse_loss(image, attributes * 2.0 - 1.0)
    return loss_text, loss_image


def trainable_parameters(model, trained_text_layers: int) -> tuple[list, list]:
    """(vision-side parameters, text-side parameters) to train; everything else is frozen."""
    inner = model.model
    for parameter in inner.parameters():
        parameter.requires_grad_(False)
    vision = [
        *inner.vision_model.parameters(),
        *inner.visual_projection.parameters(),
        *inner.text_projection.parameters(),
    ]
    layers = inner.text_model.encoder.layer
    text = [p for layer in layers[len(layers) - trained_text_layers :] for p in layer.parameters()]
    if getattr(inner.text_model, "pooler", None) is not None:
        text += list(inner.text_model.pooler.parameters())
    for parameter in vision + text:
        parameter.requires_grad_(True)
    return vision, text


class _Validation:
    """A fixed held-out set: images of the validation seed and their world dialogs (10 rounds)."""

    ROUNDS = (0, 1, 2, 3, 5, 10)

    def __init__(self, world_seed: int, stage: JointStage) -> None:
        from world.dialogs import dialog_for, split_seed
        from world.render import render_scene
        from world.scene import sample_scene

        seed = split_seed(world_seed, "val")
        size = stage.stream.image_size
        self.images = torch.from_numpy(
            np.stack(
                [
                    np.asarray(render_scene(sample_scene(seed, i), size), np.uint8).transpose(2, 0, 1)
                    for i in range(stage.val_images)
                ]
            )
        )
        self.dialogs = [dialog_for(seed, i) for i in range(stage.val_dialogs)]

    @torch.no_grad()
    def run(self, model, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        model.model.eval()
        image_vectors = []
        for start in range(0, len(self.images), 256):
            pixels = normalise_pixels(self.images[start : start + 256].to(device), dtype)
            image_vectors.append(model.image_features(pixels))
        images = F.normalize(torch.cat(image_vectors).float(), dim=-1)  # cosine, as the index searches
        result = {}
        for rounds in self.ROUNDS:
            texts = [", ".join(d.parts()[: 1 + rounds]) for d in self.dialogs]
            vectors = []
            for start in range(0, len(texts), 128):
                vectors.append(model.text_features(**model.tokenize(texts[start : start + 128])))
            scores = torch.cat(vectors) @ images.T
            target = scores[torch.arange(len(texts)), torch.arange(len(texts))]
            ranks = (scores > target[:, None]).sum(dim=1)
            result[f"hits10_r{rounds}"] = round(float((ranks < 10).float().mean()) * 100, 2)
        model.model.train()
        return result


def train_joint(
    spec,
    out: Path,
    *,
    device: str = "auto",
    workers: int | None = None,
    resume: bool = False,
    text_base: Path | None = None,
    init_weights: Path | None = None,
    progress: bool = True,
) -> Path:
    """Train the starter ``spec`` (its ``joint`` stage) into ``out``; returns ``out/trained.safetensors``.

    ``init_weights``: a shipped-weights file (``starter.safetensors``) of the same architecture to start from
    (``init="staged"``); ignored when resuming from a checkpoint.
    """
    from safetensors.torch import save_file

    from retriever_service.models.starter import new_starter_model, shipped_parameter_names

    stage: JointStage = spec.joint
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / TRAINED_FILE).is_file() and any(record.get("final") for record in read_log(out)):
        _say(progress, f"{out / TRAINED_FILE} is already trained; delete it (or use --force) to train again")
        return out / TRAINED_FILE
    torch_device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )
    amp = torch_device.type == "cuda"
    torch.manual_seed(spec.seed)
    model = new_starter_model(spec, text_base=text_base)
    if init_weights is not None and not (resume and (out / CHECKPOINT_FILE).is_file()):
        from safetensors.torch import load_file

        start = {name: value.float() for name, value in load_file(str(init_weights)).items()}
        own = model.model.state_dict()
        unknown = set(start) - set(own)
        if unknown:
            raise ValueError(f"{init_weights} does not fit this architecture (e.g. {sorted(unknown)[:3]})")
        # projections of another width (a new embedding space) start fresh; everything else carries over
        reshaped = sorted(name for name, value in start.items() if value.shape != own[name].shape)
        model.model.load_state_dict({n: v for n, v in start.items() if n not in reshaped}, strict=False)
        _say(
            progress, f"starting from {init_weights} ({len(start) - len(reshaped)} tensors; new: {reshaped})"
        )
    model.model.to(torch_device)
    model.device = torch_device
    model.max_text_tokens = stage.stream.max_text_tokens
    vision_params, text_params = trainable_parameters(model, stage.trained_text_layers)
    projections = {
        id(p) for m in (model.model.visual_projection, model.model.text_projection) for p in m.parameters()
    }
    projection_params = [p for p in vision_params if id(p) in projections]
    from world.attributes import scene_attributes
    from world.scene import sample_scene

    n_attributes = len(scene_attributes(sample_scene(0, 0)))
    attribute_head = torch.nn.Linear(model.model.config.vision_config.hidden_size, n_attributes).to(
        torch_device
    )
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / stage.temperature), device=torch_device))
    code = stage.objective == "code"
    if code and model.model.config.projection_dim != n_attributes:
        raise ValueError(
            f"the code objective needs projection_dim = the number of scene attributes ({n_attributes}), "
            f"not {model.model.config.projection_dim}"
        )
    prior_logits = attribute_prior_logits(_train_seed(spec)).to(torch_device) if code else None
    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for p in vision_params if id(p) not in projections]
                + list(attribute_head.parameters()),
                "lr": stage.lr_vision,
            },
            {"params": projection_params, "lr": stage.lr_projection or stage.lr_vision},
            {"params": text_params, "lr": stage.lr_text},
            {"params": [log_scale], "lr": stage.lr_vision, "weight_decay": 0.0},
        ],
        weight_decay=stage.weight_decay,
    )
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    step, elapsed_before = 0, 0.0
    checkpoint = out / CHECKPOINT_FILE
    log_path = out / "log.jsonl"
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=torch_device, weights_only=False)
        model.model.load_state_dict(state["model"], strict=False)
        attribute_head.load_state_dict(state["head"])
        log_scale.data.copy_(state["log_scale"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before = state["step"], state["elapsed"]
        _say(progress, f"resuming at step {step} ({elapsed_before:.0f} s trained)")
    elif log_path.exists():
        log_path.unlink()
    workers = workers if workers is not None else max(1, (os.cpu_count() or 2) - 1)
    stream = WorldBatchStream(_train_seed(spec), stage.stream, model.tokenizer, start=step, seed=spec.seed)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=amp,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    _say(progress, f"building the validation set ({stage.val_images} images) ...")
    validation = _Validation(spec.world_seed, stage)
    dtype = torch.float32
    started = time.perf_counter()
    last_checkpoint = started
    model.model.train()

    def save_checkpoint() -> None:
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save(
            {
                "model": {n: p for n, p in model.model.state_dict().items() if n in trained_names},
                "head": attribute_head.state_dict(),
                "log_scale": log_scale.detach(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed": elapsed_before + time.perf_counter() - started,
            },
            tmp,
        )
        os.replace(tmp, checkpoint)

    trained_names = set(shipped_parameter_names(sorted(model.model.state_dict()), spec))
    log = log_path.open("a")
    seen = 0
    window: list[float] = []
    iterator = iter(loader)
    while True:
        elapsed = elapsed_before + time.perf_counter() - started
        if step >= stage.steps or (stage.time_budget_s and elapsed >= stage.time_budget_s):
            break
        batch = next(iterator)
        factor = learning_rate_factor(step, stage, elapsed)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        tokens = {
            k: v.to(torch_device, non_blocking=True)
            for k, v in batch.tokens.items()
            if k in model.text_input_names
        }
        pixels = normalise_pixels(batch.images.to(torch_device, non_blocking=True), dtype)
        attributes = batch.attributes.to(torch_device, non_blocking=True)
        n_texts = tokens["input_ids"].shape[0]
        with torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=amp):
            vision_out = model.model.vision_model(pixel_values=pixels)
            pooled = vision_out.pooler_output
            image = model.model.visual_projection(pooled).float()  # before normalisation
            text = encode_by_length(model, tokens, stage.text_chunk, normalise=not code).float()
            attribute_logits = None if code else attribute_head(pooled).float()
        scale = log_scale.exp().clamp(max=100.0)
        if code:
            # the two names keep the log's columns: "t2i" is the text side's loss, "attr" the image side's
            loss_t2i, loss_attr = code_losses(text, image, attributes, n_texts, prior_logits)
            loss = loss_t2i + loss_attr
        else:
            text, image = F.normalize(text, dim=-1), F.normalize(image, dim=-1)
            logits = scale * text @ image.T  # (B, B * (1 + negatives))
            labels = torch.arange(n_texts, device=torch_device)
            loss_t2i = F.cross_entropy(logits, labels)
            loss_i2t = F.cross_entropy(logits[:, :n_texts].T, labels)
            loss_attr = F.binary_cross_entropy_with_logits(attribute_logits, attributes)
            loss = loss_t2i + stage.i2t_weight * loss_i2t + stage.attribute_weight * loss_attr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vision_params + text_params, stage.grad_clip)
        optimizer.step()
        step += 1
        seen += n_texts
        window.append(float(loss_t2i.detach()))
        if step % stage.log_every == 0:
            record = {
                "step": step,
                "elapsed_s": round(elapsed, 1),
                "loss_t2i": round(sum(window) / len(window), 4),
                "loss_attr": round(float(loss_attr.detach()), 4),
                "temperature": round(1 / float(scale.detach()), 4),
                "lr_factor": round(factor, 4),
                "dialogs_per_s": round(seen / max(1e-9, time.perf_counter() - started), 1),
            }
            window.clear()
            log.write(json.dumps(record) + "\n")
            log.flush()
            _say(progress, json.dumps(record))
        if step % stage.val_every == 0:
            record = {"step": step, "validation": validation.run(model, torch_device, dtype)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            _say(progress, json.dumps(record))
        if time.perf_counter() - last_checkpoint > stage.checkpoint_every_s:
            save_checkpoint()
            last_checkpoint = time.perf_counter()
    del iterator
    final = {
        "step": step,
        "final": True,
        "elapsed_s": round(elapsed_before + time.perf_counter() - started, 1),
    }
    final["validation"] = validation.run(model, torch_device, dtype)
    log.write(json.dumps(final) + "\n")
    log.close()
    _say(progress, json.dumps(final))
    save_checkpoint()
    state = model.model.state_dict()
    trained = out / TRAINED_FILE
    save_file(
        {name: state[name].detach().to("cpu", torch.float16).contiguous() for name in sorted(trained_names)},
        str(trained),
        metadata={"steps": str(step), "validation": json.dumps(final["validation"])},
    )
    return trained


def _train_seed(spec) -> int:
    from world.dialogs import split_seed

    return split_seed(spec.world_seed, "train")


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def read_log(out: Path) -> list[dict[str, Any]]:
    path = Path(out) / "log.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def main(
    out: Path,
    size: str = "full",
    device: str = "auto",
    workers: int | None = None,
    text_base: Path | None = None,
    time_budget: float | None = None,
    steps: int | None = None,
    init_weights: Path | None = None,
) -> None:
    """Train the joint starter (SIZE full, quick or tiny; code or code-tiny: the attribute-code recipe) into OUT
    (e.g. on a GPU machine without the project installed); then
    ``chatir starter build --work WORK`` with OUT = WORK/joint exports it."""
    from training.starter_spec import StarterSpec

    if size == "code":
        spec = StarterSpec.code_recipe()
    elif size == "code-tiny":
        spec = StarterSpec.code_tiny()
    else:
        spec = StarterSpec.joint_tiny() if size == "tiny" else StarterSpec.joint_recipe(quick=size == "quick")
    assert spec.joint is not None
    if time_budget is not None:
        spec.joint.time_budget_s = time_budget
    if steps is not None:
        spec.joint.steps = steps
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    train_joint(
        spec, out, device=device, workers=workers, resume=True, text_base=text_base, init_weights=init_weights
    )


if __name__ == "__main__":
    import typer

    typer.run(main)
