"""Training the text side of the scene-code starter: read a dialog as evidence about every scene attribute.

The embedding space is the world's attribute code (:mod:`world.attributes`); the vision tower
(:mod:`training.scene_perception`) maps a picture to its code in [-1, 1]. The text tower (MiniLM and a linear
projection to the code's length) is trained here with :func:`training.joint.code_losses`' text loss: its
output plus the attributes' prior log-odds are the logits of the target's attributes given the dialog, with
binary cross-entropy against the target's ground truth. At the optimum the output is each attribute's
log-likelihood ratio given the dialog, so a dot product with a picture's code ranks pictures by how well they
fit everything said or ruled out. No pictures are needed: the two towers train apart (in parallel on two
cores) and meet only in the shared code.

Texts come from :func:`training.world_stream.sample_example` (partial dialogs with the paraphrase layer,
"I don't know" rounds, caption masking, single rounds). Resumable (``OUT/text-state.pt``), logs
``OUT/log.jsonl`` with validation: the loss on held-out dialogs and Hits@10 per round when the held-out
pictures are represented by their true codes (what the text side alone can reach).

Run by ``chatir starter build --recipe scene-code`` (:func:`training.starter.build_starter`).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from retriever_service.models.dialog_text import split_clauses
from training.joint import attribute_prior_logits, encode_by_length, learning_rate_factor
from training.world_stream import StreamConfig, sample_example
from world.attributes import attribute_names, scene_attributes
from world.dialogs import dialog_for, split_seed
from world.scene import sample_scene

STATE_FILE = "text-state.pt"
ROUNDS = (0, 1, 2, 3, 5, 10)


class TextRecipe(BaseModel):
    """Hyper-parameters of the text run (saved beside its weights)."""

    model_config = ConfigDict(extra="forbid")

    world_seed: int = 7
    batch_size: int = Field(48, ge=2)
    max_text_tokens: int = Field(128, ge=16)
    trained_text_layers: int = Field(4, ge=1, le=6)
    steps: int = Field(100_000, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    lr_text: float = Field(1e-4, gt=0)
    lr_projection: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(30, ge=0)
    text_chunk: int = Field(16, ge=1)
    stream: StreamConfig = Field(default_factory=lambda: StreamConfig(hard_negatives=2))
    ranking_weight: float = Field(
        0.1,
        ge=0,
        description="weight of the ranking loss: InfoNCE of each dialog against the true codes of the batch's "
        "targets and near misses its dialog rules out (what makes answers such as 'no' count)",
    )
    pooling: Literal["joined", "clauses"] = Field(
        "joined",
        description="joined: the dialog in one pass; clauses: each clause (caption, round) in its own pass, "
        "the vectors added (retriever_service.models.dialog_text.split_clauses); the binary cross-entropy "
        "then applies to every clause and the ranking loss to the sums",
    )
    val_dialogs: int = Field(300, ge=8)
    val_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    checkpoint_every_s: float = Field(180.0, gt=0)
    seed: int = 0


def text_model(text_layers: int = 6):
    """A dual encoder with MiniLM and a text projection to the code's length (the vision tower is unused
    here; its weights come from the perception run when the starter is assembled)."""
    from retriever_service.models.starter import StarterArchitecture, VisionSpec, new_starter_model

    spec = StarterArchitecture(
        vision=VisionSpec(
            kind="vit", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
        ),
        text_layers=text_layers,
        projection_dim=len(attribute_names()),
        max_text_tokens=128,
    )
    return new_starter_model(spec)


def text_parameters(model, trained_layers: int) -> tuple[list, list]:
    """(encoder layers + pooler, projection) to train; the rest is frozen."""
    inner = model.model
    for parameter in inner.parameters():
        parameter.requires_grad_(False)
    layers = inner.text_model.encoder.layer
    text = [p for layer in layers[len(layers) - trained_layers :] for p in layer.parameters()]
    text += list(inner.text_model.pooler.parameters())
    projection = list(inner.text_projection.parameters())
    for parameter in text + projection:
        parameter.requires_grad_(True)
    return text, projection


class _Validation:
    def __init__(self, recipe: TextRecipe) -> None:
        seed = split_seed(recipe.world_seed, "val")
        self.dialogs = [dialog_for(seed, i) for i in range(recipe.val_dialogs)]
        truth = [scene_attributes(sample_scene(seed, i)) for i in range(recipe.val_dialogs)]
        self.truth = torch.from_numpy(np.stack(truth))
        # the gallery: the dialogs' own targets and 1,700 more held-out scenes, as their true codes
        more = [scene_attributes(sample_scene(seed, i)) for i in range(recipe.val_dialogs, 2000)]
        self.gallery = torch.cat([self.truth, torch.from_numpy(np.stack(more))]) * 2 - 1

    @torch.no_grad()
    def run(self, model, prior: torch.Tensor, pooling: str = "joined") -> dict[str, float]:
        model.model.eval()
        result: dict[str, float] = {}
        losses = []
        for rounds in ROUNDS:
            texts = [", ".join(d.parts()[: 1 + rounds]) for d in self.dialogs]
            vectors = dialog_vectors(model, texts, pooling, chunk=64)
            losses.append(float(F.binary_cross_entropy_with_logits(vectors + prior, self.truth)))
            scores = vectors @ self.gallery.T
            target = scores[torch.arange(len(texts)), torch.arange(len(texts))]
            ranks = (scores > target[:, None]).sum(dim=1)
            result[f"hits10_r{rounds}"] = round(float((ranks < 10).float().mean()) * 100, 1)
        result["bce"] = round(sum(losses) / len(losses), 4)
        model.model.train()
        return result


def dialog_vectors(model, texts: list[str], pooling: str, chunk: int = 16) -> torch.Tensor:
    """(n, code) text vectors of ``texts`` (differentiable): one pass per text, or per clause added up."""
    if pooling == "clauses":
        vectors, owners = clause_vectors(model, texts, chunk)
        return torch.zeros(len(texts), vectors.shape[1]).index_add(0, owners, vectors)
    return torch.cat([_encode(model, texts[start : start + chunk]) for start in range(0, len(texts), chunk)])


def clause_vectors(model, texts: list[str], chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The vector of every clause of ``texts`` (each distinct clause encoded once) and the text it belongs to."""
    clauses = [split_clauses(text) for text in texts]
    distinct = sorted(
        dict.fromkeys(c for cs in clauses for c in cs), key=len
    )  # short with short: less padding
    encoded = dialog_vectors(model, distinct, "joined", chunk)
    where = {clause: k for k, clause in enumerate(distinct)}
    rows = torch.tensor([where[c] for cs in clauses for c in cs], dtype=torch.long)
    owners = torch.tensor([i for i, cs in enumerate(clauses) for _ in cs], dtype=torch.long)
    return encoded[rows], owners


def _encode(model, texts: list[str]) -> torch.Tensor:
    tokens = model.tokenizer(
        texts, padding="longest", truncation=True, max_length=model.max_text_tokens, return_tensors="pt"
    )
    tokens = {k: v for k, v in tokens.items() if k in model.text_input_names}
    return model._text_embeddings(tokens).float()


def code_text_loss(
    vectors: torch.Tensor,
    codes: torch.Tensor,
    prior: torch.Tensor,
    ranking_weight: float,
    *,
    clauses: torch.Tensor | None = None,
    owners: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy of ``vectors + prior`` against the targets' attributes (``codes[:n]``), plus
    ``ranking_weight`` x InfoNCE over the gallery ``codes`` (targets, then near misses). With clause pooling,
    ``clauses`` are the clause vectors (``vectors`` their sums per dialog) and ``owners`` the dialog of each: the
    cross-entropy then applies to every clause, so each clause's vector is the evidence of that clause alone.

    The ranking logits are ``vectors . (2 code - 1) / 2``: for log-likelihood ratios that is the naive-Bayes
    log-likelihood of the dialog for each gallery scene, up to a constant per dialog, so both losses ask for
    the same vectors; the second gives a denied attribute ("is there a circle? no") the weight it has in
    ranking, which the first learns only slowly (its gradient there is the attribute's small base rate).
    """
    n = vectors.shape[0]
    if owners is None:
        loss = F.binary_cross_entropy_with_logits(vectors + prior, codes[:n])
    else:  # clause pooling: every clause is evidence about its own dialog's target; the ranking is of the sums
        loss = F.binary_cross_entropy_with_logits(clauses + prior, codes[owners])
    if ranking_weight:
        logits = vectors @ (codes * 2 - 1).T / 2
        loss = loss + ranking_weight * F.cross_entropy(logits, torch.arange(n))
    return loss


def trained_state(model) -> dict[str, torch.Tensor]:
    """The text side's tensors that ship, by their names in the dual encoder: every encoder layer (the frozen
    bottom ones too: a run started from ``init_weights`` keeps that file's, which need not be MiniLM's), the
    pooler and the projection."""
    return {
        name: value
        for name, value in model.model.state_dict().items()
        if name.startswith(("text_projection.", "text_model.pooler.", "text_model.encoder.layer."))
    }


def train_text(
    out: Path,
    recipe: TextRecipe,
    *,
    init_weights: Path | None = None,
    resume: bool = True,
    threads: int | None = None,
) -> Path:
    """Train (or resume) the text side into ``out``; returns ``out / "text.safetensors"`` (at once if already
    trained)."""
    from safetensors.torch import load_file, save_file

    from training.scene_perception import finished

    out = Path(out)
    if resume and finished(out, "text.safetensors"):
        return out / "text.safetensors"
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(recipe.model_dump_json(indent=1))
    torch.manual_seed(recipe.seed)
    model = text_model()
    model.max_text_tokens = recipe.max_text_tokens
    state_path = out / STATE_FILE
    if init_weights is not None and not (resume and state_path.is_file()):
        start = {n: v.float() for n, v in load_file(str(init_weights)).items() if n.startswith("text_")}
        own = model.model.state_dict()
        usable = {n: v for n, v in start.items() if n in own and own[n].shape == v.shape}
        model.model.load_state_dict(usable, strict=False)
        print(f"text side from {init_weights}: {len(usable)} tensors", flush=True)
    text, projection = text_parameters(model, recipe.trained_text_layers)
    optimizer = torch.optim.AdamW(
        [{"params": text, "lr": recipe.lr_text}, {"params": projection, "lr": recipe.lr_projection}],
        weight_decay=recipe.weight_decay,
    )
    base = [g["lr"] for g in optimizer.param_groups]
    step, elapsed = 0, 0.0
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        model.model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
        print(f"resumed at step {step} ({elapsed / 60:.1f} min in)", flush=True)
    prior = attribute_prior_logits(split_seed(recipe.world_seed, "train"))
    validation = _Validation(recipe)
    train_seed = split_seed(recipe.world_seed, "train")
    rng = random.Random(f"code-text/{recipe.seed}/{step}")
    log = (out / "log.jsonl").open("a")

    def save() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "model": trained_state(model),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed": elapsed,
            },
            tmp,
        )
        os.replace(tmp, state_path)

    if step == 0:
        record = {"step": 0, "val": validation.run(model, prior, recipe.pooling)}
        log.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    started = time.perf_counter() - elapsed
    last_save = time.perf_counter()
    window: list[float] = []
    model.model.train()
    while step < recipe.steps and (not recipe.time_budget_s or elapsed < recipe.time_budget_s):
        texts, targets, negatives = [], [], []
        for _ in range(recipe.batch_size):
            text_, scene, near = sample_example(train_seed, recipe.stream, rng)
            texts.append(text_)
            targets.append(scene_attributes(scene))
            negatives += [scene_attributes(s) for s in near]
        codes = torch.from_numpy(np.stack(targets + negatives))
        if recipe.pooling == "clauses":
            clauses, owners = clause_vectors(model, texts, recipe.text_chunk)
            vectors = torch.zeros(len(texts), clauses.shape[1]).index_add(0, owners, clauses)
            loss = code_text_loss(
                vectors, codes, prior, recipe.ranking_weight, clauses=clauses, owners=owners
            )
        else:
            tokens = model.tokenizer(
                texts,
                padding="longest",
                truncation=True,
                max_length=recipe.max_text_tokens,
                return_tensors="pt",
            )
            tokens = {k: v for k, v in tokens.items() if k in model.text_input_names}
            vectors = encode_by_length(model, tokens, recipe.text_chunk, normalise=False).float()
            loss = code_text_loss(vectors, codes, prior, recipe.ranking_weight)
        factor = learning_rate_factor(step, recipe, elapsed)
        for group, rate in zip(optimizer.param_groups, base, strict=True):
            group["lr"] = rate * factor
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(text + projection, 1.0)
        optimizer.step()
        step += 1
        window.append(float(loss.detach()))
        elapsed = time.perf_counter() - started
        if step % recipe.log_every == 0:
            record = {
                "step": step,
                "minutes": round(elapsed / 60, 2),
                "loss": round(sum(window) / len(window), 4),
            }
            window.clear()
            if step % recipe.val_every == 0:
                record["val"] = validation.run(model, prior, recipe.pooling)
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps(record), flush=True)
        if time.perf_counter() - last_save > recipe.checkpoint_every_s:
            save()
            last_save = time.perf_counter()
    save()
    final = {
        "step": step,
        "minutes": round(elapsed / 60, 2),
        "final": validation.run(model, prior, recipe.pooling),
    }
    log.write(json.dumps(final) + "\n")
    log.close()
    print(json.dumps(final), flush=True)
    result = out / "text.safetensors"
    save_file(
        {n: v.detach().contiguous() for n, v in trained_state(model).items()},
        str(result),
        metadata={"steps": str(step), "trained_text_layers": str(recipe.trained_text_layers)},
    )
    return result
