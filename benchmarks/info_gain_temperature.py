"""How soft should the information-gain questioner's answer likelihoods be? A sweep on a tuning world.

The questioner scores ``P(answer | candidate) = softmax over answers of cos(image, text(q, a)) / T``. With a
weak model the cosines are noisy; a sharp T turns that noise into confident, contradictory likelihoods, and
questions with many answers ("what colour is the triangle?", 57 answers) look informative when they are not.
This runs ChatIR's live protocol (world oracle answering, the product's conversation engine) for each T and
prints Hits@10 and ATR by round. Tune on a world that is *not* the one you report on:

    chatir world splits /tmp/tuneworld --train 0 --val 0 --test 10000 --test-dialogs 500 --seed 9
    python benchmarks/info_gain_temperature.py /tmp/tuneworld --dialogs 500 --temperatures 0.05,0.1,0.2,0.5

Corpus embeddings are cached under CHATIR_HOME/cache/bench-info-gain.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.questioners import InfoGainQuestioner, ModelCandidateScorer, load_bank
from agent.search import InMemorySearcher
from chatir.settings import get_settings
from evaluation.embeddings import corpus_embeddings
from evaluation.live import evaluate_live
from evaluation.world_mode import WorldOracleAnswerer, eval_reranker, world_inputs

REPORT_ROUNDS = (0, 1, 2, 3, 5, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, help="a splits folder from `chatir world splits`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--dialogs", type=int, default=300)
    parser.add_argument("--temperatures", default="0.05,0.1,0.2,0.5")
    parser.add_argument(
        "--top-n", default="20", help="candidates the questioner weighs (comma list to sweep)"
    )
    parser.add_argument("--model", default=None, help="default CHATIR_MODEL")
    parser.add_argument("--rerank-weights", default="0,1", help="answer re-ranker weights to sweep (0: off)")
    parser.add_argument("--rerank-pool", type=int, default=1000)
    parser.add_argument("--bank", default="world")
    args = parser.parse_args()

    from retriever_service.models import load_model

    settings = get_settings()
    model = load_model(args.model or settings.model, device="cpu", settings=settings)
    corpus, dialogs, source = world_inputs(args.world, args.split, args.dialogs)
    vectors = corpus_embeddings(model, corpus, settings.home / "cache" / "bench-info-gain")
    lookup = InMemorySearcher.from_ids(model, vectors, list(corpus.paths))
    bank = load_bank(args.bank)
    temperatures = [float(t) for t in args.temperatures.split(",")]

    top_ns = [int(n) for n in str(args.top_n).split(",")]
    weights = [float(w) for w in args.rerank_weights.split(",")]
    print(f"\n{source}: {len(corpus):,} images, {len(dialogs)} dialogs\n")
    header = " | ".join(f"r{r}" for r in REPORT_ROUNDS)
    print(f"| T | top_n | rerank | Hits@10 (%) {header} | ATR {header} | s |")
    print("|---|---:|---:|" + "---:|" * (2 * len(REPORT_ROUNDS) + 1))
    for temperature, top_n, weight in [(t, n, w) for t in temperatures for n in top_ns for w in weights]:
        scorer = ModelCandidateScorer(model, lookup, temperature=temperature)
        questioner = InfoGainQuestioner(scorer, bank, top_n=top_n)
        questioner.warm_up()
        tuned = settings.model_copy(
            update={
                "info_gain_temperature": temperature,
                "rerank_weight": weight,
                "rerank_pool": args.rerank_pool if weight else 0,
            }
        )
        reranker = eval_reranker(tuned, model, lookup, args.bank)
        started = time.perf_counter()
        _, ranks, _ = evaluate_live(
            model,
            corpus,
            vectors,
            dialogs,
            questioner,
            WorldOracleAnswerer(),
            name=f"T={temperature}",
            settings=settings,
            progress=False,
            reranker=reranker,
        )
        hits = (np.minimum.accumulate(ranks, axis=1) <= 10).mean(axis=0) * 100  # ranks are 1-based
        atr = ranks.mean(axis=0)
        cells = [f"{hits[r]:.1f}" for r in REPORT_ROUNDS] + [f"{atr[r]:,.0f}" for r in REPORT_ROUNDS]
        print(
            f"| {temperature} | {top_n} | {weight} | "
            + " | ".join(cells)
            + f" | {time.perf_counter() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
