"""Live evaluation on real images: ChatIR's live protocol with an answerer that looks at the target.

The targets and their first descriptions come from a ChatIR-format dialog file (its recorded rounds are not
used); each questioner talks through the product's conversation engine with an answerer from
:mod:`evaluation.answerers` (an LLM with vision, or a VQA model), and the target's rank is read after every
round, as in :func:`evaluation.world_mode.run_world` (which has the world's oracle instead).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chatir.settings import Settings
from evaluation.answerers import build_answerer
from evaluation.data import ImageCorpus, load_chatir_dialogs
from evaluation.embeddings import corpus_embeddings
from evaluation.results import SystemResult
from evaluation.world_mode import answers_read_by, eval_reranker, run_live_system, system_slug

DEFAULT_BANK = "generic"
"""Real images get the everyday-photo questions (the world's bank asks about coloured shapes)."""


def run_live_images(options, *, settings: Settings, model, cache_root: Path | None):
    """Every asked questioner live on ``options.images`` with ``options.answerer``; (results, ranks, meta)."""
    from agent.search import InMemorySearcher

    bank = DEFAULT_BANK if options.bank == "world" else options.bank
    corpus = ImageCorpus.open(options.images, options.corpus_list, complete=options.protocol == "chatir")
    dialogs = load_chatir_dialogs(options.dialogs[0], limit=options.n_dialogs)
    corpus.target_indices([d.img for d in dialogs])  # every target must be in the corpus
    answerer = build_answerer(options.answerer, settings, options.answerer_model)
    corpus_vectors = corpus_embeddings(
        model,
        corpus,
        cache_root / "corpus" if cache_root is not None else None,
        batch_size=getattr(model, "batch_size", 64),
        progress=options.progress,
    )
    lookup = InMemorySearcher.from_ids(model, corpus_vectors, list(corpus.paths))
    reranker = eval_reranker(settings, model, lookup, bank)
    results: list[SystemResult] = []
    ranks: dict[str, np.ndarray] = {}
    answerer_name = f"{options.answerer} ({options.answerer_model or settings.llm_model})"
    for kind in options.questioners:
        result, system_ranks, _ = run_live_system(
            kind,
            options,
            settings=settings,
            model=model,
            corpus=corpus,
            corpus_vectors=corpus_vectors,
            dialogs=dialogs,
            answerer=answerer,
            lookup=lookup,
            reranker=reranker,
            bank=bank,
            resume_fields={
                "images": str(corpus.root),
                "bank": bank,
                "answerer": answerer_name,
                "dialogs": str(options.dialogs[0]),
            },
        )
        results.append(result)
        ranks[system_slug(kind)] = system_ranks
    meta = {
        "mode": "live",
        "title": "ChatIR protocol, live questioners on real images",
        "corpus_size": len(corpus),
        "images": str(options.images),
        "targets": f"{options.dialogs[0]} (targets and first descriptions)",
        "n_dialogs": len(dialogs),
        "answerer": answerer_name,
        "bank": bank,
        "rerank": f"answers re-read over the top {settings.rerank_pool}" if reranker is not None else "off",
        "answers": answers_read_by(settings, model, lookup, bank),
    }
    return results, ranks, meta
