"""The training loop: AdamW, per-epoch learning-rate decay, mixed precision, gradient accumulation,
checkpoints that resume exactly, a progress bar and a JSONL log.

What is trained is a :class:`TrainingTask` (the dialog encoder against cached image embeddings, or the
starter model's image-caption stage); the loop knows nothing about models or data.

Layout of a run folder::

    config.json                      the run's configuration (a resumed run must match it)
    log.jsonl                        one JSON object per line: steps, epochs (with validation), resumes
    checkpoints/epoch-0003/          model folder (``load_model`` / ``CHATIR_MODEL`` can point here)
        trainer_state.pt             trained weights, optimizer, scheduler, scaler, RNG states, position
    checkpoints/step-00000420/       a checkpoint inside an epoch (Ctrl-C, or ``checkpoint_every_steps``)
    final/                           the trained model

Resuming replays the interrupted epoch's batch order (every random draw of the data is a function of
(seed, epoch, position)) and skips the batches already done, restores the trained weights, the optimizer,
the scheduler and the RNG states, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from chatir.errors import ChatIRError
from retriever_service.training.config import LoopConfig

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
LOG_FILE = "log.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"


class TrainingError(ChatIRError):
    """A training run cannot start or continue as asked."""


class TrainingInterrupted(ChatIRError):
    """The run was stopped (Ctrl-C); a checkpoint was written and ``--resume`` continues from it."""

    def __init__(self, checkpoint: Path, epoch: int, step: int) -> None:
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
        super().__init__(
            f"training interrupted in epoch {epoch + 1} after step {step}; checkpoint saved to {checkpoint}. "
            "Run the same command with --resume to continue."
        )


class TrainingTask(Protocol):
    """What the loop trains. Batches must be a pure function of (epoch, step) for exact resumption."""

    def named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The trained parameters (everything else stays frozen), with stable names."""
        ...

    def n_batches(self, epoch: int) -> int: ...

    def batch(self, epoch: int, step: int) -> Any: ...

    def micro_batches(self, batch: Any, n: int) -> list[tuple[Any, float]]:
        """``batch`` split into ``n`` parts with weights summing to 1 (the loss is their weighted sum)."""
        ...

    def loss(self, micro_batch: Any) -> torch.Tensor: ...

    def train_mode(self, training: bool) -> None: ...

    def validate(self, epoch: int) -> dict[str, Any]:
        """Validation metrics after ``epoch`` (JSON-able); ``{}`` when there is nothing to validate."""
        ...

    def save_model(self, folder: Path, info: dict[str, Any]) -> None:
        """Write a model folder that ``load_model`` loads (``info`` describes the training so far)."""
        ...


class TrainingSummary(BaseModel):
    out: Path
    final_model: Path
    epochs: int
    steps: int
    seconds: float
    train_loss: list[float]
    validation: list[dict[str, Any]]
    resumed_from: Path | None = None


# ------------------------------------------------------------------------------------------------ helpers
def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full precision)."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (by the step they were written at)."""
    folder = Path(out) / CHECKPOINTS_DIR
    found = []
    for state_file in folder.glob(f"*/{STATE_FILE}"):
        try:
            position = torch.load(state_file, map_location="cpu", weights_only=False)["global_step"]
        except Exception as error:  # noqa: BLE001 -- a damaged checkpoint is skipped, an older one is used
            logger.warning("skipping unreadable checkpoint %s: %s", state_file.parent, error)
            continue
        found.append((position, state_file.parent.name.startswith("epoch"), state_file.parent))
    return [path for *_, path in sorted(found)]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (None: unchanged), restoring the previous number afterwards."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _stop_on_sigint(request_stop: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C asks the loop to stop at the next step boundary (a second Ctrl-C stops at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        request_stop()
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)
        tqdm.write("stopping after this step and saving a checkpoint (Ctrl-C again to abort now)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Runs a :class:`TrainingTask` under a :class:`LoopConfig`, writing the run folder ``out``."""

    def __init__(
        self,
        task: TrainingTask,
        loop: LoopConfig,
        out: Path,
        *,
        device: torch.device,
        fingerprint: str,
        config_json: dict[str, Any],
        on_step: Callable[[Trainer, int, int], None] | None = None,
        description: str = "train",
    ) -> None:
        self.task = task
        self.loop = loop
        self.out = Path(out)
        self.device = device
        self.fingerprint = fingerprint
        self.config_json = config_json
        self.on_step = on_step
        self.description = description
        self._stop = False

    def request_stop(self) -> None:
        """Stop at the next step boundary, after writing a checkpoint (raises :class:`TrainingInterrupted`)."""
        self._stop = True

    # -------------------------------------------------------------- persistence
    def _log(self, record: dict[str, Any]) -> None:
        with (self.out / LOG_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def _trained_state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().to("cpu", copy=True) for name, p in self.task.named_parameters()}

    def _save_checkpoint(self, name: str, state: dict[str, Any], info: dict[str, Any]) -> Path:
        folder = self.out / CHECKPOINTS_DIR / name
        tmp = folder.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.task.save_model(tmp, info)
        torch.save(state, tmp / STATE_FILE)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder

    def _prune(self) -> None:
        folder = self.out / CHECKPOINTS_DIR
        for step_dir in folder.glob("step-*"):
            shutil.rmtree(step_dir, ignore_errors=True)
        if self.loop.keep_checkpoints:
            epochs = sorted(folder.glob("epoch-*"))
            for old in epochs[: -self.loop.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)

    def _check_config(self, resume: bool) -> None:
        config_file = self.out / CONFIG_FILE
        existing = find_checkpoints(self.out)
        if not resume:
            if existing or (self.out / FINAL_DIR).exists():
                raise TrainingError(
                    f"{self.out} already holds a training run; pass --resume to continue it, or choose "
                    "another --out"
                )
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / LOG_FILE).unlink(missing_ok=True)
            config_file.write_text(
                json.dumps({"fingerprint": self.fingerprint, **self.config_json}, indent=2) + "\n"
            )
            return
        if not config_file.is_file():
            raise TrainingError(f"nothing to resume in {self.out} (no {CONFIG_FILE}); start without --resume")
        saved = json.loads(config_file.read_text())
        if saved.get("fingerprint") != self.fingerprint:
            changed = sorted(
                key
                for key in self.config_json
                if key in saved and saved[key] != self.config_json[key] and key not in ("epochs", "progress")
            )
            raise TrainingError(
                f"the run in {self.out} was started with other settings ({', '.join(changed) or 'see config.json'}); "
                "resume with the same settings, or choose another --out"
            )
        config_file.write_text(
            json.dumps({"fingerprint": self.fingerprint, **self.config_json}, indent=2) + "\n"
        )

    # -------------------------------------------------------------- the loop
    def fit(self, resume: bool = False) -> TrainingSummary:
        loop = self.loop
        self._check_config(resume)
        named = self.task.named_parameters()
        if not named:
            raise TrainingError("the task has no trainable parameters")
        parameters = [p for _, p in named]
        optimizer = torch.optim.AdamW(parameters, lr=loop.lr, weight_decay=loop.weight_decay)
        floor = loop.min_lr / loop.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(loop.lr_decay**e, floor))
        dtype = amp_dtype(loop.amp, self.device)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

        epoch, step, global_step = 0, 0, 0
        history: dict[str, list] = {"train_loss": [], "validation": []}
        resumed_from: Path | None = None
        if resume:
            checkpoints = find_checkpoints(self.out)
            if checkpoints:
                resumed_from = checkpoints[-1]
                state = torch.load(resumed_from / STATE_FILE, map_location="cpu", weights_only=False)
                by_name = dict(named)
                missing = set(by_name) ^ set(state["trained"])
                if missing:
                    raise TrainingError(
                        f"checkpoint {resumed_from} does not match the model ({sorted(missing)[:3]} ...)"
                    )
                with torch.no_grad():
                    for name, value in state["trained"].items():
                        by_name[name].copy_(value.to(by_name[name].device))
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                scaler.load_state_dict(state["scaler"])
                _set_rng_state(state["rng"])
                epoch, step, global_step = state["epoch"], state["step"], state["global_step"]
                history = state["history"]
                self._log(
                    {
                        "event": "resume",
                        "checkpoint": str(resumed_from),
                        "epoch": epoch,
                        "step": step,
                        "global_step": global_step,
                    }
                )
            else:
                seed_everything(loop.seed)
        else:
            seed_everything(loop.seed)
        if epoch >= loop.epochs and resumed_from is not None and (self.out / FINAL_DIR).is_dir():
            tqdm.write(f"{self.out}: all {loop.epochs} epochs are done already")

        started = time.perf_counter()

        def state_at(at_epoch: int, at_step: int) -> dict[str, Any]:
            return {
                "epoch": at_epoch,
                "step": at_step,
                "global_step": global_step,
                "trained": self._trained_state(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_state(),
                "history": history,
                "fingerprint": self.fingerprint,
            }

        def info(done_epochs: int) -> dict[str, Any]:
            last = history["validation"][-1] if history["validation"] else {}
            return {"epochs": done_epochs, "steps": global_step, "val": last}

        with _stop_on_sigint(self.request_stop):
            while epoch < loop.epochs:
                n_batches = self.task.n_batches(epoch)
                self.task.train_mode(True)
                epoch_losses: list[float] = []
                bar = tqdm(
                    total=n_batches,
                    initial=step,
                    desc=f"{self.description} epoch {epoch + 1}/{loop.epochs}",
                    unit="step",
                    disable=not loop.progress,
                    dynamic_ncols=True,
                )
                for current in range(step, n_batches):
                    loss_value = self._step(optimizer, scaler, dtype, epoch, current, parameters)
                    global_step += 1
                    epoch_losses.append(loss_value)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                    if global_step % loop.log_every == 0:
                        self._log(
                            {
                                "event": "step",
                                "epoch": epoch + 1,
                                "step": current + 1,
                                "global_step": global_step,
                                "loss": loss_value,
                                "lr": optimizer.param_groups[0]["lr"],
                            }
                        )
                    if self.on_step is not None:
                        self.on_step(self, epoch, current + 1)
                    last_step = current + 1 == n_batches
                    periodic = loop.checkpoint_every_steps and global_step % loop.checkpoint_every_steps == 0
                    if (self._stop or periodic) and not last_step:
                        checkpoint = self._save_checkpoint(
                            f"step-{global_step:08d}", state_at(epoch, current + 1), info(epoch)
                        )
                        self._log(
                            {"event": "checkpoint", "path": str(checkpoint), "global_step": global_step}
                        )
                        if self._stop:
                            bar.close()
                            self._log({"event": "interrupted", "epoch": epoch + 1, "step": current + 1})
                            raise TrainingInterrupted(checkpoint, epoch, current + 1)
                bar.close()
                scheduler.step()
                self.task.train_mode(False)
                mean_loss = float(np.mean(epoch_losses)) if epoch_losses else math.nan
                history["train_loss"].append(mean_loss)
                metrics = self.task.validate(epoch)
                history["validation"].append(metrics)
                record = {
                    "event": "epoch",
                    "epoch": epoch + 1,
                    "train_loss": mean_loss,
                    "global_step": global_step,
                    "lr_next": optimizer.param_groups[0]["lr"],
                    "seconds": round(time.perf_counter() - started, 2),
                    "val": metrics,
                }
                self._log(record)
                if metrics:
                    tqdm.write(_describe_metrics(epoch + 1, mean_loss, metrics))
                epoch, step = epoch + 1, 0
                checkpoint = self._save_checkpoint(f"epoch-{epoch:04d}", state_at(epoch, 0), info(epoch))
                self._prune()
                if self._stop and epoch < loop.epochs:
                    self._log({"event": "interrupted", "epoch": epoch, "step": 0})
                    raise TrainingInterrupted(checkpoint, epoch, 0)

        final = self.out / FINAL_DIR
        tmp = final.with_name(f".{FINAL_DIR}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.task.save_model(tmp, info(epoch))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        seconds = time.perf_counter() - started
        self._log(
            {"event": "done", "final": str(final), "global_step": global_step, "seconds": round(seconds, 2)}
        )
        return TrainingSummary(
            out=self.out,
            final_model=final,
            epochs=epoch,
            steps=global_step,
            seconds=seconds,
            train_loss=history["train_loss"],
            validation=history["validation"],
            resumed_from=resumed_from,
        )

    def _step(self, optimizer, scaler, dtype, epoch: int, step: int, parameters) -> float:
        batch = self.task.batch(epoch, step)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        for micro, weight in self.task.micro_batches(batch, self.loop.grad_accum):
            with autocast:
                loss = self.task.loss(micro)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; lower --lr"
                )
            scaler.scale(loss * weight).backward()
            total += float(loss.detach()) * weight
        if self.loop.max_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, self.loop.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        return total


def _describe_metrics(epoch: int, loss: float, metrics: dict[str, Any]) -> str:
    hits = metrics.get("hits@10")
    if isinstance(hits, list) and hits:
        rounds = " ".join(f"{h:.1f}" for h in hits)
        return f"epoch {epoch}: loss {loss:.4f}, val Hits@10 per round: {rounds}"
    shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
    return f"epoch {epoch}: loss {loss:.4f}, {shown}"
