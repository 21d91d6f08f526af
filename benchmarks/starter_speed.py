"""Throughput of each part of the starter recipe on this machine, and the projected build time.

    python benchmarks/starter_speed.py [--threads 2]

Prints one table: items per second for caption encoding (frozen MiniLM), image-caption steps, dialog
steps and validation encoding, the load average while measuring, and the build time the default
``StarterSpec`` would take at these speeds. Timings on a shared machine are noisy: compare runs side by
side, and look at the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def _timed(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from chatir.dialog import Dialog
    from chatir.settings import Settings
    from retriever_service.models.starter import new_starter_model
    from training.contrastive import ImageCaptionTask
    from training.starter_spec import StarterSpec
    from world.attributes import scene_attributes
    from world.dialogs import dialog_for
    from world.language import caption_for
    from world.render import render_scene
    from world.scene import sample_scene

    spec = StarterSpec()
    model = new_starter_model(spec, settings=Settings(home="/tmp/starter-speed"))
    load_before = os.getloadavg()[0]
    captions = [caption_for(1, i, sample_scene(1, i)).text for i in range(128)]
    dialogs: list[Dialog] = [dialog_for(1, i) for i in range(64)]

    # 1. frozen text tower on captions (batches of 128)
    def encode_captions() -> None:
        with torch.no_grad():
            model.model.text_model(**model.tokenize(captions))

    caption_rate = 128 * _timed(encode_captions, args.seconds)

    # 2. image-caption step (batch 64, vision tower + projections + attribute head)
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    paths = []
    for i in range(64):
        path = folder / f"{i}.png"
        render_scene(sample_scene(1, i), spec.vision.image_size).save(path)
        paths.append(path)
    task = ImageCaptionTask(
        model,
        paths,
        [[c] for c in captions[:64]],
        batch_size=64,
        seed=0,
        attributes=np.stack([scene_attributes(sample_scene(1, i)) for i in range(64)]),
        attribute_weight=0.15,
        progress=False,
    )
    optimizer = torch.optim.AdamW([p for _, p in task.named_parameters()], lr=1e-5)
    task.train_mode(True)

    def image_step() -> None:
        optimizer.zero_grad()
        task.loss(task.batch(0, 0)).backward()
        optimizer.step()

    image_rate = 64 * _timed(image_step, args.seconds)

    # 3. dialog step (batch 64, D_i with i uniform, top layers trained)
    from training.dialog_task import freeze_all_but, text_parameters_by_name

    trained = text_parameters_by_name(model, spec.dialog.trained_text_layers)
    freeze_all_but(model.model, trained)
    dialog_optimizer = torch.optim.AdamW([p for _, p in trained], lr=1e-5)
    rng = np.random.default_rng(0)
    texts = [model.dialog_text(d.upto(int(rng.integers(0, 11)))) for d in dialogs]
    gallery = torch.nn.functional.normalize(torch.randn(512, model.dim), dim=-1)
    model.model.train()

    by_length = sorted(texts, key=len)
    micro = [by_length[i : i + 16] for i in range(0, len(by_length), 16)]  # grouped by length, as the trainer

    def dialog_step() -> None:
        dialog_optimizer.zero_grad()
        for chunk in micro:
            scores = model.text_features(**model.tokenize(chunk)) @ gallery.T
            (scores.logsumexp(dim=1).mean() / len(micro)).backward()
        dialog_optimizer.step()

    dialog_rate = 64 * _timed(dialog_step, args.seconds)

    # 4. validation: every round of every dialog
    model.model.eval()
    round_texts = [model.dialog_text(d.upto(r)) for d in dialogs[:8] for r in range(11)]
    validation_rate = len(round_texts) * _timed(lambda: model.encode_texts(round_texts), args.seconds)
    load_after = os.getloadavg()[0]

    c, d = spec.contrastive, spec.dialog
    n_captions = spec.train_images * c.caption_variants + spec.val_images
    projected = {
        "caption features": n_captions / caption_rate,
        "image-caption stage": c.epochs * spec.train_images / image_rate,
        "dialog stage": d.epochs * spec.train_images / dialog_rate,
        "validation (dialog stage)": d.epochs * spec.val_dialogs * 11 / validation_rate,
    }
    print(f"threads {args.threads}, load average {load_before:.2f} -> {load_after:.2f}")
    print("| part | rate | projected for the default spec |")
    print("|---|---:|---:|")
    for name, rate, unit in [
        ("caption encoding", caption_rate, "captions/s"),
        ("image-caption step", image_rate, "images/s"),
        ("dialog step", dialog_rate, "dialogs/s"),
        ("validation encoding", validation_rate, "texts/s"),
    ]:
        key = {
            "caption encoding": "caption features",
            "image-caption step": "image-caption stage",
            "dialog step": "dialog stage",
            "validation encoding": "validation (dialog stage)",
        }[name]
        print(f"| {name} | {rate:.1f} {unit} | {projected[key] / 60:.1f} min |")
    print(f"| total (without world generation) | | {sum(projected.values()) / 60:.1f} min |")


if __name__ == "__main__":
    main()
