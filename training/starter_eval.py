"""``chatir starter eval``: ChatIR's table for the starter recipe on a held-out world corpus.

Three systems, all with the same (frozen after stage 1) image tower, so the corpus is embedded once:

- (a) ``zero-shot``: the image-caption contrastive model fed the concatenated dialog (ChatIR's baseline);
- (b) ``dialog-trained``: after ChatIR's dialog training with caption masking 0.2 (the starter);
- (c) ``no-masking``: the same dialog training without caption masking (trained here when missing).

The corpus is the test split of the build's world seed (``make_splits``), with the first ``dialogs`` test
images as targets; Hits@10 per round 0..10 via :func:`evaluation.harness.evaluate_fixed_dialogs`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.data import ImageCorpus, load_chatir_dialogs
from evaluation.embeddings import corpus_embeddings, probe_image
from evaluation.harness import evaluate_fixed_dialogs
from evaluation.report import ReportFiles, write_report
from evaluation.results import SystemResult
from training.masking import MaskingConfig
from training.starter import StarterError, train_dialogs
from training.starter_spec import StarterSpec
from training.trainer import torch_threads

if TYPE_CHECKING:
    from chatir.settings import Settings

SYSTEMS = (
    ("(a) zero-shot: contrastive model, concatenated dialog", "contrastive"),
    ("(b) dialog-trained, caption masking 0.2", "dialog"),
    ("(c) dialog-trained, no caption masking", "dialog-nomask"),
)


def read_spec(work: Path) -> StarterSpec:
    spec_file = Path(work) / "spec.json"
    if not spec_file.is_file():
        raise StarterError(f"{work} holds no starter build (no spec.json); run `chatir starter build` first")
    return StarterSpec.model_validate_json(spec_file.read_text())


def ensure_ablation(
    work: Path, spec: StarterSpec, *, settings: Settings, threads: int | None = 1, progress: bool = True
) -> Path:
    """Model (c): stage 2 again from the same contrastive model, without caption masking."""
    contrastive = work / "contrastive" / "final"
    if not (contrastive / "config.json").is_file():
        raise StarterError(f"{contrastive} is missing; finish `chatir starter build --work {work}` first")
    final, _ = train_dialogs(
        spec,
        work / "world",
        contrastive,
        work / "dialog-nomask",
        settings=settings,
        masking=MaskingConfig(caption=0.0),
        threads=threads,
        progress=progress,
    )
    return final


def evaluate_starter(
    work: Path,
    *,
    corpus_size: int = 50_000,
    n_dialogs: int = 500,
    rounds: int = 10,
    out: Path | None = None,
    settings: Settings | None = None,
    threads: int | None = 1,
    progress: bool = True,
) -> tuple[list[SystemResult], ReportFiles]:
    """Train (c) if needed, build the test world, evaluate (a), (b), (c); write the report to ``out``."""
    from chatir.settings import get_settings

    settings = settings or get_settings()
    work = Path(work)
    spec = read_spec(work)
    with torch_threads(threads):
        return _evaluate(work, spec, corpus_size, n_dialogs, rounds, out, settings, threads, progress)


def _evaluate(
    work: Path,
    spec: StarterSpec,
    corpus_size: int,
    n_dialogs: int,
    rounds: int,
    out: Path | None,
    settings: Settings,
    threads: int | None,
    progress: bool,
) -> tuple[list[SystemResult], ReportFiles]:
    from retriever_service.models import load_model
    from world.dialogs import make_splits

    for _, folder in SYSTEMS[:2]:
        if not (work / folder / "final" / "config.json").is_file():
            raise StarterError(
                f"{work / folder / 'final'} is missing; finish `chatir starter build --work {work}` first"
            )
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    ensure_ablation(work, spec, settings=settings, threads=threads, progress=progress)
    timings["train_ablation"] = time.perf_counter() - clock

    clock = time.perf_counter()
    test_root = work / f"world-test-{corpus_size}"
    splits = make_splits(
        test_root,
        0,
        0,
        corpus_size,
        spec.world_seed,
        test_dialogs=n_dialogs,
        rounds=rounds,
        workers=os.cpu_count(),
        progress=progress,
    )
    test = splits.splits["test"]
    dialogs = load_chatir_dialogs(test_root / test.dialogs_file)
    corpus = ImageCorpus.from_folder(test_root / test.world_dir)
    timings["test_world"] = time.perf_counter() - clock

    results: list[SystemResult] = []
    ranks: dict[str, np.ndarray] = {}
    corpus_vectors: np.ndarray | None = None
    probe: np.ndarray | None = None
    for name, folder in SYSTEMS:
        clock = time.perf_counter()
        model = load_model(str(work / folder / "final"), device="cpu", settings=settings)
        model_probe = model.encode_images([probe_image()])
        if corpus_vectors is None:
            corpus_vectors = corpus_embeddings(
                model, corpus, work / "cache", batch_size=256, progress=progress
            )
            probe = model_probe
        elif not np.allclose(model_probe, probe, atol=1e-5):
            raise StarterError(f"{folder} has another image tower than the first system; the table needs one")
        result, system_ranks = evaluate_fixed_dialogs(
            model, dialogs, corpus, name=name, rounds=rounds, corpus_vectors=corpus_vectors, progress=progress
        )
        result.timings_s["total"] = time.perf_counter() - clock
        results.append(result)
        ranks[folder] = system_ranks
    meta: dict[str, Any] = {
        "title": "Starter model: ChatIR fixed-dialog evaluation on the held-out world",
        "command": f"chatir starter eval --work {work} --corpus {corpus_size} --dialogs {n_dialogs}",
        "model": str(work),
        "corpus_size": len(corpus),
        "targets": len(dialogs),
        "answerer": "world oracle (fixed dialogs from world.dialogs)",
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    files = write_report(
        results,
        Path(out) if out else work / "eval",
        meta=meta,
        ranks=ranks,
        title="Starter model on the held-out world",
    )
    return results, files
