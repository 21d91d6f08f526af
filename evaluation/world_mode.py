"""``chatir eval --world ROOT``: questioners compared live on the procedural world, the oracle answering.

``ROOT`` is either a splits folder written by ``chatir world splits`` (``splits.json``; the corpus is the
``--split`` world, the targets and captions come from its dialog file) or a single world folder
(``world.json``; targets are its first images, captions made by the world's caption generator). With
``--dialogs FILE`` the targets and first descriptions come from that ChatIR-format file instead (e.g. people's
own descriptions, ``benchmarks/data/free_descriptions_demo.json`` for the demo gallery).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from chatir.dialog import Dialog
from chatir.settings import Settings
from evaluation.data import EvaluationInputError, ImageCorpus, TargetDialog, load_chatir_dialogs
from evaluation.embeddings import corpus_embeddings, model_fingerprint, text_fingerprint
from evaluation.live import evaluate_live, write_chatir_dialogs
from evaluation.results import SystemResult

DEFAULT_WORLD_DIALOGS = 2000
SYSTEM_NAMES = {
    "none": "no questions",
    "random": "random (bank)",
    "info_gain": "info-gain (LLM-free)",
    "llm": "LLM agent",
}


class WorldOracleAnswerer:
    """The world's oracle answering for the simulated user, from the target image's ground truth."""

    def answer(self, target: str, image: Path, question: str, dialog: Dialog) -> str:
        return _oracle(target).answer(question)


@lru_cache(maxsize=4096)
def _oracle(target: str):
    from world.oracle import Oracle

    return Oracle.for_image(target)


def world_inputs(
    root: Path, split: str, n_dialogs: int | None
) -> tuple[ImageCorpus, list[TargetDialog], str]:
    """The corpus, the test targets (with captions) and a description of where they came from."""
    from world.generator import WorldError, iter_manifest_json, read_world_info

    root = Path(root)
    try:
        if (root / "splits.json").is_file():
            from world.dialogs import read_splits

            splits = read_splits(root)
            if split not in splits.splits:
                raise EvaluationInputError(
                    f"{root} has no '{split}' split (it has {', '.join(splits.splits) or 'none'}); "
                    "choose one with --split"
                )
            info = splits.splits[split]
            world_dir = root / info.world_dir
            dialogs = load_chatir_dialogs(root / info.dialogs_file, limit=n_dialogs)
            source = f"{root} split '{split}' ({info.dialogs_file})"
        elif (root / "world.json").is_file():
            from world.dialogs import dialog_for
            from world.generator import image_relpath

            world_dir = root
            world = read_world_info(root)
            count = min(n_dialogs or DEFAULT_WORLD_DIALOGS, world.n)
            dialogs = [
                TargetDialog(img=image_relpath(world.seed, i), dialog=dialog_for(world.seed, i, rounds=0))
                for i in range(count)
            ]
            source = f"{root} (first {count} images, generated captions)"
        else:
            raise EvaluationInputError(
                f"{root} is neither a world folder (world.json) nor a splits folder (splits.json); "
                "make one with `chatir world generate` or `chatir world splits`"
            )
        world = read_world_info(world_dir)
        if not world.complete:
            raise EvaluationInputError(
                f"the world in {world_dir} is incomplete; rerun the world command to finish it"
            )
        paths = tuple(record["path"] for record in iter_manifest_json(world_dir))
    except WorldError as error:
        raise EvaluationInputError(str(error)) from None
    return ImageCorpus(root=world_dir, paths=paths), dialogs, source


def system_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def build_eval_questioner(kind: str, settings: Settings, model, searcher, bank: str):
    """The questioner ``kind`` as the product builds it, its candidate lookups served in process."""
    from agent.factory import build_questioner

    if kind == "llm" and not settings.llm_model:
        raise EvaluationInputError(
            "the llm questioner needs a chat model: set CHATIR_LLM_MODEL (and CHATIR_LLM_BASE_URL for a local "
            "OpenAI-compatible server such as Ollama or vLLM)"
        )
    # The LLM agent gets its candidates in the prompt; in evaluation it has no service to call a search tool on.
    questioner = build_questioner(
        settings, kind, text_encoder=model, lookup=searcher, bank=bank, tool_factory=lambda scope: None
    )
    warm_up = getattr(questioner, "warm_up", None) or getattr(
        getattr(questioner, "fallback", None), "warm_up", None
    )
    if callable(warm_up):
        warm_up()
    return questioner


def run_live_system(
    kind: str,
    options,
    *,
    settings: Settings,
    model,
    corpus: ImageCorpus,
    corpus_vectors: np.ndarray,
    dialogs: list[TargetDialog],
    answerer,
    lookup,
    reranker,
    bank: str,
    resume_fields: dict,
):
    """One questioner live over ``dialogs`` (resumable; its transcripts written as ChatIR dialogs under
    ``options.out``): (result, ranks, transcripts). ``resume_fields`` add what else the run depends on."""
    questioner = build_eval_questioner(kind, settings, model, lookup, bank)
    resume_key = json.dumps(
        {
            "model": str(model.model_id),
            "towers": [model_fingerprint(model), text_fingerprint(model)],  # retrained weights, same id
            "corpus": len(corpus),
            "rounds": options.rounds,
            "ties": options.ties,
            "questioner": kind,
            "questioning": [
                settings.info_gain_top_n,
                settings.info_gain_absent_threshold,
                settings.info_gain_settled_threshold,
                settings.info_gain_answer_weight,
            ],
            "answer_model": answers_read_by(settings, model, lookup, bank),
            "rerank": [settings.rerank_pool, settings.rerank_weight, settings.info_gain_temperature],
            **resume_fields,
        },
        sort_keys=True,
    )
    out = Path(options.out)
    result, system_ranks, transcripts = evaluate_live(
        model,
        corpus,
        corpus_vectors,
        dialogs,
        questioner,
        answerer,
        name=SYSTEM_NAMES[kind],
        settings=settings,
        rounds=options.rounds,
        resume_file=(out / "live" / f"{system_slug(kind)}.jsonl") if options.resume else None,
        resume_key=resume_key,
        ks=options.ks,
        ties=options.ties,
        progress=options.progress,
        reranker=reranker,
    )
    write_chatir_dialogs(transcripts, out / "dialogs" / f"{system_slug(kind)}.json")
    return result, system_ranks, transcripts


def run_world(options, *, settings: Settings, model, cache_root: Path | None):
    """Evaluate every asked questioner live on the world; returns (results, ranks per system, meta)."""
    from agent.search import InMemorySearcher

    corpus, dialogs, source = world_inputs(options.world, options.split, options.n_dialogs)
    if options.dialogs:  # targets with first descriptions of one's own (their recorded rounds are ignored)
        dialogs = load_chatir_dialogs(options.dialogs[0], limit=options.n_dialogs)
        source = f"{options.dialogs[0]} (targets and descriptions) in {corpus.root}"
    corpus.target_indices([d.img for d in dialogs])  # every target must be in the corpus
    corpus_vectors = corpus_embeddings(
        model,
        corpus,
        cache_root / "corpus" if cache_root is not None else None,
        batch_size=getattr(model, "batch_size", 64),
        progress=options.progress,
    )
    lookup = InMemorySearcher.from_ids(model, corpus_vectors, list(corpus.paths))  # image vectors by id
    answerer = WorldOracleAnswerer()
    reranker = eval_reranker(settings, model, lookup, options.bank)
    answers = answers_read_by(settings, model, lookup, options.bank)
    symbolic = _symbolic_retriever(corpus, progress=options.progress)
    sections: list[str] = []
    results: list[SystemResult] = []
    ranks: dict[str, np.ndarray] = {}
    for kind in options.questioners:
        result, system_ranks, transcripts = run_live_system(
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
            bank=options.bank,
            resume_fields={
                "dim": model.dim,
                "world": str(corpus.root),
                "bank": options.bank,
                "dialogs": source,
            },
        )
        ceiling, ceiling_ranks, section = _ceiling(symbolic, corpus, transcripts, result, options.rounds)
        results += [result, ceiling]
        ranks[system_slug(kind)] = system_ranks
        ranks[system_slug(kind) + "-symbolic"] = ceiling_ranks
        sections.append(section)
    meta = {
        "mode": "live",
        "title": "ChatIR protocol, live questioners on the world",
        "corpus_size": len(corpus),
        "targets": source,
        "n_dialogs": len(dialogs),
        "answerer": "world oracle",
        "bank": options.bank,
        "rerank": (
            f"answers re-read over the top {settings.rerank_pool} (weight {settings.rerank_weight})"
            if reranker is not None
            else "off"
        ),
        "answers": answers,
        "sections": sections,
    }
    return results, ranks, meta


def answers_read_by(settings: Settings, model, lookup, bank: str) -> str:
    """How the questioner and the re-ranker read answers from pictures in this run (recorded in the report)."""
    from agent.factory import build_scorer
    from agent.questioners import load_bank

    scorer = build_scorer(settings, model, lookup, load_bank(bank))
    answer_model = scorer.active_answer_model()
    if answer_model is None:
        return "text side"
    read = f"answer model {answer_model.fingerprint} (fitted for {answer_model.model})"
    if scorer.caption_reader is not None:
        read += f", caption reader {scorer.caption_reader.fingerprint}"
    return read


def _symbolic_retriever(corpus: ImageCorpus, *, progress: bool):
    from evaluation.symbolic import SymbolicRetriever
    from world.generator import iter_manifest_json
    from world.scene import Scene

    by_path = {record["path"]: record["scene"] for record in iter_manifest_json(corpus.root)}
    scenes = [Scene.model_validate(by_path[path]) for path in corpus.paths]
    return SymbolicRetriever(scenes, seed=0)


def _ceiling(symbolic, corpus: ImageCorpus, transcripts, learned: SystemResult, rounds: int):
    """The symbolic ceiling on the same dialogs, the questions' quality, and a markdown section."""
    from evaluation.symbolic import consistent_sizes, padded_ranks, question_quality, world_caption

    targets = corpus.target_indices([t.img for t in transcripts])
    evaluated = [
        symbolic.evaluate(int(target), world_caption(t.img, t.dialog.caption), t.dialog)
        for target, t in zip(targets, transcripts, strict=True)
    ]
    ceiling_ranks = padded_ranks(evaluated, rounds)
    ceiling = SystemResult.from_ranks(
        f"{learned.system} · symbolic ceiling", ceiling_ranks, mode="live", model_id="symbolic"
    )
    quality = question_quality(evaluated)
    sizes = consistent_sizes(evaluated, rounds)
    learned.details.update({f"questions_{k}": v for k, v in quality.items()})
    hits, top = learned.hits[10], ceiling.hits[10]
    ratio = ["–" if b == 0 else f"{a / b:.2f}" for a, b in zip(hits, top, strict=True)]
    header = "| | " + " | ".join(str(r) for r in range(len(hits))) + " |"
    section = "\n".join(
        [
            f"### {learned.system}: learned retriever vs the symbolic ceiling",
            "",
            header,
            "|---|" + "---:|" * len(hits),
            "| learned Hits@10 (%) | " + " | ".join(f"{v:.1f}" for v in hits) + " |",
            "| symbolic Hits@10 (%) | " + " | ".join(f"{v:.1f}" for v in top) + " |",
            "| learned / symbolic | " + " | ".join(ratio) + " |",
            "| consistent images (median) | " + " | ".join(f"{v:,.0f}" for v in sizes) + " |",
            "",
            (
                f"Questions asked: {quality['asked']:,}; about absent objects "
                f"{quality['absent_pct']:.1f} %, about settled facts {quality['settled_pct']:.1f} %, "
                f"either {quality['absent_or_settled_pct']:.1f} %."
            ),
            "",
        ]
    )
    return ceiling, ceiling_ranks, section


def eval_reranker(settings: Settings, model, lookup, bank: str):
    """The answer re-ranker, part of the retriever for every questioner (same model, same bank); None when off."""
    from agent.factory import build_scorer
    from agent.questioners import load_bank
    from agent.rerank import AnswerReranker

    questions = load_bank(bank)
    return AnswerReranker.from_settings(settings, build_scorer(settings, model, lookup, questions), questions)
