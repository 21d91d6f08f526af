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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from chatir.errors import ChatIRError
from training.config import LoopConfig

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


@dataclass
class _Run:
    """A run's moving parts and position: what a checkpoint saves and the summary reports."""

    named: list[tuple[str, torch.nn.Parameter]]
    parameters: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None
    epoch: int = 0  # epochs done
    step: int = 0  # steps done in the current epoch
    global_step: int = 0
    history: dict[str, list] = field(default_factory=lambda: {"train_loss": [], "validation": []})
    resumed_from: Path | None = None
    started: float = 0.0

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def info(self) -> dict[str, Any]:
        """The training so far, for a saved model folder."""
        last = self.history["validation"][-1] if self.history["validation"] else {}
        return {"epochs": self.epoch, "steps": self.global_step, "val": last}


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
        self._check_config(resume)
        run = self._new_run()
        if not (resume and self._resume(run)):
            seed_everything(self.loop.seed)
        if run.epoch >= self.loop.epochs and run.resumed_from is not None and (self.out / FINAL_DIR).is_dir():
            tqdm.write(f"{self.out}: all {self.loop.epochs} epochs are done already")
        run.started = time.perf_counter()
        with _stop_on_sigint(self.request_stop):
            while run.epoch < self.loop.epochs:
                losses = self._train_epoch(run)
                self._end_epoch(run, losses)
        return self._finish(run)

    def _new_run(self) -> _Run:
        loop = self.loop
        named = self.task.named_parameters()
        if not named:
            raise TrainingError("the task has no trainable parameters")
        parameters = [p for _, p in named]
        optimizer = torch.optim.AdamW(parameters, lr=loop.lr, weight_decay=loop.weight_decay)
        floor = loop.min_lr / loop.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(loop.lr_decay**e, floor))
        dtype = amp_dtype(loop.amp, self.device)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        return _Run(named, parameters, optimizer, scheduler, scaler, dtype)

    def _resume(self, run: _Run) -> bool:
        """Restore ``run`` from the run folder's newest checkpoint; False when there is none (a fresh start)."""
        checkpoints = find_checkpoints(self.out)
        if not checkpoints:
            return False
        run.resumed_from = checkpoints[-1]
        state = torch.load(run.resumed_from / STATE_FILE, map_location="cpu", weights_only=False)
        by_name = dict(run.named)
        missing = set(by_name) ^ set(state["trained"])
        if missing:
            raise TrainingError(
                f"checkpoint {run.resumed_from} does not match the model ({sorted(missing)[:3]} ...)"
            )
        with torch.no_grad():
            for name, value in state["trained"].items():
                by_name[name].copy_(value.to(by_name[name].device))
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        run.epoch, run.step, run.global_step = state["epoch"], state["step"], state["global_step"]
        run.history = state["history"]
        self._log(
            {
                "event": "resume",
                "checkpoint": str(run.resumed_from),
                "epoch": run.epoch,
                "step": run.step,
                "global_step": run.global_step,
            }
        )
        return True

    def _state(self, run: _Run) -> dict[str, Any]:
        """What a checkpoint holds to continue exactly at ``run``'s position."""
        return {
            "epoch": run.epoch,
            "step": run.step,
            "global_step": run.global_step,
            "trained": self._trained_state(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "rng": _rng_state(),
            "history": run.history,
            "fingerprint": self.fingerprint,
        }

    def _train_epoch(self, run: _Run) -> list[float]:
        """The steps of ``run.epoch`` from ``run.step`` on; their losses."""
        n_batches = self.task.n_batches(run.epoch)
        self.task.train_mode(True)
        losses: list[float] = []
        bar = tqdm(
            total=n_batches,
            initial=run.step,
            desc=f"{self.description} epoch {run.epoch + 1}/{self.loop.epochs}",
            unit="step",
            disable=not self.loop.progress,
            dynamic_ncols=True,
        )
        while run.step < n_batches:
            loss_value = self._step(run.optimizer, run.scaler, run.dtype, run.epoch, run.step, run.parameters)
            run.step += 1
            run.global_step += 1
            losses.append(loss_value)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{run.lr:.2e}")
            interrupted_at = self._after_step(run, loss_value, last_step=run.step == n_batches)
            if interrupted_at is not None:
                bar.close()
                self._log({"event": "interrupted", "epoch": run.epoch + 1, "step": run.step})
                raise TrainingInterrupted(interrupted_at, run.epoch, run.step)
        bar.close()
        return losses

    def _after_step(self, run: _Run, loss_value: float, *, last_step: bool) -> Path | None:
        """Log, call ``on_step``, and write a checkpoint inside the epoch when due or asked to stop.

        Returns that checkpoint when the run is to stop there.
        """
        if run.global_step % self.loop.log_every == 0:
            self._log(
                {
                    "event": "step",
                    "epoch": run.epoch + 1,
                    "step": run.step,
                    "global_step": run.global_step,
                    "loss": loss_value,
                    "lr": run.lr,
                }
            )
        if self.on_step is not None:
            self.on_step(self, run.epoch, run.step)
        every = self.loop.checkpoint_every_steps
        periodic = every and run.global_step % every == 0
        if (self._stop or periodic) and not last_step:  # the last step's checkpoint is the epoch's
            checkpoint = self._save_checkpoint(f"step-{run.global_step:08d}", self._state(run), run.info())
            self._log({"event": "checkpoint", "path": str(checkpoint), "global_step": run.global_step})
            if self._stop:
                return checkpoint
        return None

    def _end_epoch(self, run: _Run, losses: list[float]) -> None:
        """Decay the learning rate, validate, log, and write the epoch's checkpoint (stopping if asked)."""
        run.scheduler.step()
        self.task.train_mode(False)
        mean_loss = float(np.mean(losses)) if losses else math.nan
        run.history["train_loss"].append(mean_loss)
        metrics = self.task.validate(run.epoch)
        run.history["validation"].append(metrics)
        self._log(
            {
                "event": "epoch",
                "epoch": run.epoch + 1,
                "train_loss": mean_loss,
                "global_step": run.global_step,
                "lr_next": run.lr,
                "seconds": round(time.perf_counter() - run.started, 2),
                "val": metrics,
            }
        )
        if metrics:
            tqdm.write(_describe_metrics(run.epoch + 1, mean_loss, metrics))
        run.epoch, run.step = run.epoch + 1, 0
        checkpoint = self._save_checkpoint(f"epoch-{run.epoch:04d}", self._state(run), run.info())
        self._prune()
        if self._stop and run.epoch < self.loop.epochs:
            self._log({"event": "interrupted", "epoch": run.epoch, "step": 0})
            raise TrainingInterrupted(checkpoint, run.epoch, 0)

    def _finish(self, run: _Run) -> TrainingSummary:
        """Write the final model (atomically) and sum the run up."""
        final = self.out / FINAL_DIR
        tmp = final.with_name(f".{FINAL_DIR}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.task.save_model(tmp, run.info())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        seconds = time.perf_counter() - run.started
        self._log(
            {
                "event": "done",
                "final": str(final),
                "global_step": run.global_step,
                "seconds": round(seconds, 2),
            }
        )
        return TrainingSummary(
            out=self.out,
            final_model=final,
            epochs=run.epoch,
            steps=run.global_step,
            seconds=seconds,
            train_loss=run.history["train_loss"],
            validation=run.history["validation"],
            resumed_from=run.resumed_from,
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
