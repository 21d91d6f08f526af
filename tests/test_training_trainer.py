"""The dialog-training loop on a tiny random model: batches, checkpoints, exact resumption, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from chatir.settings import Settings
from tests.conftest import build_tiny_dual
from training.config import TrainConfig
from training.data import DialogTrainingSet, nearest_neighbours
from training.dialog_task import train_dialog_encoder
from training.masking import MaskingConfig
from training.trainer import TrainingError, TrainingInterrupted, find_checkpoints


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from world.dialogs import make_splits

    root = tmp_path_factory.mktemp("training-world")
    make_splits(root, 96, 30, 0, seed=5, val_dialogs=12, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_dual(tmp_path_factory, bert_uncased_dir) -> Path:
    return build_tiny_dual(tmp_path_factory.mktemp("tiny-dual") / "dual", bert_uncased_dir)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(world: Path, model: Path, out: Path, **overrides) -> TrainConfig:
    values = {
        "dialogs": world / "train_dialogs.json",
        "images": world / "train",
        "val_dialogs": world / "val_dialogs.json",
        "val_images": world / "val",
        "model": str(model),
        "out": out,
        "epochs": 2,
        "batch_size": 16,
        "lr": 2e-3,
        "device": "cpu",
        "progress": False,
        "cache_dir": out.parent / "cache",
        "hard_negatives": 2,
        "random_negatives": 4,
        "log_every": 1,
        "keep_checkpoints": 0,
    }
    return TrainConfig(**{**values, **overrides})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _stop_at(epoch: int, step: int):
    def on_step(trainer, current_epoch, current_step):
        if (current_epoch, current_step) == (epoch, step):
            trainer.request_stop()

    return on_step


def test_batches_are_deterministic_and_galleries_hold_each_target_once(world):
    data = DialogTrainingSet.from_files(
        world / "train_dialogs.json", world / "train", masking=MaskingConfig(), seed=3
    )
    vectors = np.random.default_rng(0).normal(size=(len(data.corpus), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    neighbours = nearest_neighbours(vectors, 3)
    assert not (neighbours == np.arange(len(vectors))[:, None]).any()  # never itself
    brute = np.argsort(-(vectors @ vectors.T - 10 * np.eye(len(vectors))), axis=1)[:, :3]
    assert np.array_equal(neighbours, brute)

    first = data.batch(1, 2, 16, neighbours=neighbours, random_negatives=5)
    again = data.batch(1, 2, 16, neighbours=neighbours, random_negatives=5)
    assert first.samples == again.samples and np.array_equal(first.gallery, again.gallery)
    assert len(set(first.gallery.tolist())) == len(first.gallery)
    for sample, column in zip(first.samples, first.targets, strict=True):
        assert first.gallery[column] == sample.target
        assert 0 <= sample.round <= 10
    assert data.batch(2, 2, 16).samples != first.samples  # another epoch, another order
    rounds = [data.sample(e, p, 0).round for e in range(3) for p in range(60)]
    assert set(rounds) == set(range(11))  # i uniform in 0..10


def test_training_writes_a_loadable_model_checkpoints_and_a_log(world, tiny_dual, tmp_path):
    from retriever_service.models import load_model

    out = tmp_path / "run"
    summary = train_dialog_encoder(_config(world, tiny_dual, out), _settings(tmp_path))
    assert summary.epochs == 2 and summary.steps == 2 * (96 // 16)
    assert [p.name for p in find_checkpoints(out)] == ["epoch-0001", "epoch-0002"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert len(epochs) == 2 and len(epochs[0]["val"]["hits@10"]) == 11
    assert epochs[1]["lr_next"] == pytest.approx(2e-3 * 0.93**2)
    model = load_model(str(summary.final_model), device="cpu", settings=_settings(tmp_path))
    assert model.encode_texts(["a red circle"]).shape == (1, model.dim)
    meta = json.loads((summary.final_model / "chatir.json").read_text())
    assert meta["training"]["loss"] == "recall" and meta["training"]["epochs"] == 2

    with pytest.raises(TrainingError, match="already holds a training run"):
        train_dialog_encoder(_config(world, tiny_dual, out), _settings(tmp_path))
    with pytest.raises(TrainingError, match="other settings"):
        train_dialog_encoder(_config(world, tiny_dual, out, lr=1e-3), _settings(tmp_path), resume=True)


@pytest.mark.parametrize("stop", [(0, 3), (0, 6)], ids=["mid-epoch", "after-epoch-1"])
def test_resume_after_interrupt_gives_the_uninterrupted_weights(world, tiny_dual, tmp_path, stop):
    straight = train_dialog_encoder(_config(world, tiny_dual, tmp_path / "straight"), _settings(tmp_path))

    out = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted) as interrupted:
        train_dialog_encoder(_config(world, tiny_dual, out), _settings(tmp_path), on_step=_stop_at(*stop))
    expected_checkpoint = "step-00000003" if stop == (0, 3) else "epoch-0001"
    assert interrupted.value.checkpoint.name == expected_checkpoint
    assert "--resume" in str(interrupted.value)
    assert not (out / "final").exists()

    resumed = train_dialog_encoder(_config(world, tiny_dual, out), _settings(tmp_path), resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == expected_checkpoint
    assert resumed.steps == straight.steps
    a, b = _weights(tmp_path / "straight"), _weights(out)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    assert resumed.validation[-1]["hits@10"] == straight.validation[-1]["hits@10"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r["event"] == "resume" for r in log)


def test_micro_batches_give_exactly_the_full_batch_gradient(world, tiny_dual, tmp_path):
    """With a frozen image side each query's loss depends only on its own scores: accumulation is exact."""
    from evaluation.embeddings import corpus_embeddings
    from retriever_service.models import load_model
    from training.dialog_task import DialogTask

    model = load_model(str(tiny_dual), device="cpu", settings=_settings(tmp_path), dtype=torch.float32)
    config = _config(world, tiny_dual, tmp_path / "unused", val_dialogs=None, val_images=None)
    data = DialogTrainingSet.from_files(config.dialogs, config.images, masking=config.masking)
    vectors = corpus_embeddings(model, data.corpus, None, progress=False)
    task = DialogTask(model, data, vectors, config)
    model.model.eval()  # no dropout: the same forward pass either way
    batch = task.batch(0, 1)
    parameters = [p for _, p in task.named_parameters()]

    def gradients(parts: int) -> list[torch.Tensor]:
        for p in parameters:
            p.grad = None
        for micro, weight in task.micro_batches(batch, parts):
            (task.loss(micro) * weight).backward()
        return [p.grad.clone() for p in parameters if p.grad is not None]

    full, accumulated = gradients(1), gradients(4)
    assert len(task.micro_batches(batch, 4)) == 4 and len(full) == len(accumulated) > 0
    assert all(torch.allclose(f, a, atol=1e-6, rtol=1e-4) for f, a in zip(full, accumulated, strict=True))


def test_chatir_train_command(world, tiny_dual, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from frontends.main import app

    monkeypatch.setenv("CHATIR_HOME", str(tmp_path / "home"))
    from chatir.settings import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    out = tmp_path / "cli-run"
    args = [
        "train",
        "--dialogs",
        str(world / "train_dialogs.json"),
        "--images",
        str(world / "train"),
        "--model",
        str(tiny_dual),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "CHATIR_MODEL=" in result.output and (out / "final" / "config.json").is_file()

    bad_args = [str(tmp_path / "bad") if a == str(out) else a for a in args] + ["--mask-caption", "1.5"]
    bad = runner.invoke(app, bad_args)
    assert bad.exit_code != 0 and not (tmp_path / "bad").exists()
    assert "caption" in str(bad.exception)  # ChatIRError: the CLI's main() prints it as one line
    get_settings.cache_clear()
