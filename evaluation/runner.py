"""What ``chatir eval`` does: load inputs and the model once, evaluate every system, write the report."""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from chatir.settings import Settings, get_settings
from evaluation.data import EvaluationInputError, ImageCorpus, load_chatir_dialogs
from evaluation.embeddings import corpus_embeddings
from evaluation.harness import evaluate_fixed_dialogs
from evaluation.report import write_report
from evaluation.results import DEFAULT_KS, SystemResult


class EvalOptions(BaseModel):
    """Everything one evaluation run needs (the CLI's options)."""

    dialogs: list[Path] = Field(default_factory=list)
    images: Path | None = None
    corpus_list: Path | None = None
    world: Path | None = None
    questioners: list[Literal["none", "random", "info_gain", "llm"]] = Field(default_factory=list)
    n_dialogs: int | None = Field(None, ge=1)
    split: str = "test"
    bank: str = "world"
    rounds: int = Field(10, ge=1, le=50)
    out: Path = Path("eval-out")
    model: str | None = None
    ks: list[int] = Field(default_factory=lambda: list(DEFAULT_KS))
    ties: Literal["index", "optimistic", "pessimistic"] = "index"
    protocol: Literal["default", "chatir"] = "default"
    answerer: Literal["llm", "vqa"] | None = Field(
        None, description="Live mode on real images (--dialogs/--images): who answers for the user."
    )
    answerer_model: str | None = None
    cache: bool = True
    resume: bool = True
    progress: bool = True
    command: str | None = Field(
        None, description="The command line that asked for this run (for the report)."
    )


def _system_name(path: Path, taken: set[str]) -> str:
    name, n = path.stem, 2
    while name in taken:
        name, n = f"{path.stem}-{n}", n + 1
    taken.add(name)
    return name


def run_evaluation(options: EvalOptions, *, settings: Settings | None = None, model=None) -> str:
    """Run the evaluation described by ``options``; returns a short summary (the markdown table + paths)."""
    settings = settings or get_settings()
    started = time.perf_counter()
    chatir_protocol = options.protocol == "chatir"
    if chatir_protocol:
        from evaluation.protocol import check_options, load_model_for_chatir

        check_options(world=options.world, corpus_list=options.corpus_list, ties=options.ties)
    if model is None and chatir_protocol:  # ChatIR's protocol reproduces its numbers with torch fp32
        model = load_model_for_chatir(options.model or settings.model, settings)
    elif model is None:
        from retriever_service.models import load_model
        from retriever_service.models.fastpath import apply_configured_fastpath

        model = load_model(options.model or settings.model, device=settings.device, settings=settings)
        apply_configured_fastpath(model, settings)  # the service's text path: what users get, faster
    cache_root = settings.home / "cache" / "eval" if options.cache else None

    if options.world is not None:
        from evaluation.world_mode import run_world

        results, ranks, meta = run_world(options, settings=settings, model=model, cache_root=cache_root)
    elif options.answerer is not None:
        from evaluation.live_images import run_live_images

        results, ranks, meta = run_live_images(options, settings=settings, model=model, cache_root=cache_root)
    else:
        results, ranks, meta = _run_fixed(options, model=model, cache_root=cache_root)
    if chatir_protocol:
        from evaluation.protocol import protocol_report

        meta["protocol"] = protocol_report(model)
        meta.setdefault("sections", []).append(
            "protocol chatir: " + ", ".join(f"{k} {v}" for k, v in meta["protocol"].items() if k != "name")
        )

    wall = time.perf_counter() - started
    meta.update(
        {
            "command": options.command,
            "model": str(model.model_id),
            "embedding_dim": int(model.dim),
            "rounds": options.rounds,
            "ties": options.ties,
            "wall_s": round(wall, 2),
            "text_path": getattr(model, "text_path", "fp32"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "device": str(getattr(model, "device", "cpu")),
            },
        }
    )
    files = write_report(
        results,
        options.out,
        meta=meta,
        ranks=ranks,
        title=f"{meta.get('title', 'ChatIR evaluation')} — model {model.model_id}",
    )
    from evaluation.report import markdown_table

    return (
        markdown_table(results)
        + "".join("\n" + section for section in meta.get("sections", []))
        + f"\nwall time {wall:.1f} s; wrote {files.json_path}, {files.csv_path}, {files.markdown_path}, "
        f"{files.plot_path}"
    )


def _run_fixed(options: EvalOptions, *, model, cache_root: Path | None):
    if options.images is None:
        raise EvaluationInputError("fixed-dialog evaluation needs the image root (--images)")
    corpus = ImageCorpus.open(options.images, options.corpus_list, complete=options.protocol == "chatir")
    dialog_sets = [(path, load_chatir_dialogs(path, limit=options.n_dialogs)) for path in options.dialogs]
    for _, dialogs in dialog_sets:  # check every input before the long work starts
        corpus.target_indices([d.img for d in dialogs])
    started = time.perf_counter()
    corpus_vectors = corpus_embeddings(
        model,
        corpus,
        cache_root / "corpus" if cache_root is not None else None,
        batch_size=getattr(model, "batch_size", 64),
        progress=options.progress,
    )
    corpus_s = time.perf_counter() - started

    results: list[SystemResult] = []
    ranks: dict[str, np.ndarray] = {}
    taken: set[str] = set()
    for path, dialogs in dialog_sets:
        name = _system_name(path, taken)
        started = time.perf_counter()
        result, system_ranks = evaluate_fixed_dialogs(
            model,
            dialogs,
            corpus,
            name=name,
            rounds=options.rounds,
            corpus_vectors=corpus_vectors,
            cache_root=cache_root,
            ks=options.ks,
            ties=options.ties,
            progress=options.progress,
        )
        result.timings_s["total"] = time.perf_counter() - started
        results.append(result)
        ranks[name] = system_ranks
    meta = {
        "mode": "fixed",
        "title": "ChatIR protocol, fixed dialogs",
        "corpus_size": len(corpus),
        "images": str(options.images),
        "corpus_embeddings_s": round(corpus_s, 2),
    }
    return results, ranks, meta
