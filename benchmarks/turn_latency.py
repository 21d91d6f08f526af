"""A chat turn with the questioner's text embeddings from the service (the torch-free agent) versus from a model
loaded in the agent's own process (how the agent worked before it went torch-free).

    python benchmarks/turn_latency.py --home /tmp/turn-bench --gallery 2000 --conversations 20 --answers 3

It prepares the demo's stack (gallery, service on a local port, index), builds the same LLM-free questioner
twice -- once embedding answers through ``POST /v1/encode/texts``, once with the service's model object in this
process -- and runs the same conversations through both engines, alternating, so machine noise hits both
alike. Reported: the question bank's warm-up (embedding every answer once), and per-turn wall-clock p50/p95 and
mean. Turns re-use the cached answer embeddings, so their difference is the per-conversation model check and
noise. Compare runs side by side, never as a timed test.

    python benchmarks/turn_latency.py --home /tmp/turn-bench --compare readers

compares instead how answers are read (all through the service): the text side with the re-ranker off (the
default until 2026-12-01), the world bank's answer model with the re-ranker off, and the answer model with the
re-ranker over 1,000 candidates (the default since). A re-ranked turn fetched the pool as 1,000 full hits with
their image vectors, as JSON lists of floats (before 2026-12-02) or as base64 float32 bytes; since session 14
it fetches a bare pool (ids, scores, one matrix: ``POST /v1/search/pool``) and full hits only for the candidates
it keeps (``POST /v1/images/lookup``), and the pool is 3,000 by default. Since session 15 the agent keeps the
embeddings it has been sent (``CHATIR_RERANK_VECTOR_CACHE``): a pool brings ids and scores, and only the
vectors the agent lacks come with ``POST /v1/images/vectors``; measured with the cache emptied at each
conversation (its first turn fetches everything) and shared by all (the default). Use ``--gallery 5000`` or
more to see the larger pool's cost (a pool never holds more than the gallery).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.factory import build_engine, build_questioner, build_vector_cache
from agent.questioners import load_bank
from agent.search import Searcher, ServiceSearcher, ServiceTextEncoder
from chatir.schemas import VectorEncoding
from chatir.settings import get_settings
from frontends.demo import demo_settings, demo_stack
from tools.client import RetrieverClient

CAPTIONS = (
    "a red star on a blue background",
    "two green circles",
    "a small yellow square in the corner",
    "a striped purple heart",
    "a dark picture with a frame",
)


FULL_LISTS = "answer model, re-ranker 1000, full hits, vectors as JSON lists (before 2026-12-02)"
FULL_BASE64 = "answer model, re-ranker 1000, full hits, vectors as base64 (before)"
CACHED = "answer model, re-ranker 3000, ids and scores + only the vectors the agent lacks"


class FullHitsSearcher:
    """A service searcher offering only ``search``: the engine re-ranks 1,000 full hits (the path before the
    pool call)."""

    def __init__(self, inner: ServiceSearcher) -> None:
        self.inner = inner

    def search(self, dialog, *, k, scope, with_vectors=False):
        return self.inner.search(dialog, k=k, scope=scope, with_vectors=with_vectors)


def _conversation(engine, cid: str, caption: str, answers: int) -> list[float]:
    """Seconds of each turn: the description, then ``answers`` answers (each the first answer the bank allows)."""
    times = []
    started = time.perf_counter()
    turn = engine.handle(cid, caption)
    times.append(time.perf_counter() - started)
    bank = {q.question: q.answers for q in engine.questioner.bank}
    for _ in range(answers):
        if not turn.question:
            break
        answer = bank.get(turn.question, ["yes"])[0]
        started = time.perf_counter()
        turn = engine.handle(cid, answer)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, required=True, help="CHATIR_HOME of the benchmark (gallery, index)"
    )
    parser.add_argument("--gallery", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--answers", type=int, default=3)
    parser.add_argument(
        "--compare",
        choices=("encoders", "readers"),
        default="encoders",
        help="encoders: service vs in-process text embeddings; readers: text side vs answer model vs re-ranker",
    )
    args = parser.parse_args()

    settings = demo_settings(get_settings().model_copy(update={"home": args.home}))
    bank = load_bank("world")
    with demo_stack(
        settings, gallery_size=args.gallery, service_port=0, warm_up=False, progress=False
    ) as stack:
        local = stack.local
        service_encoder = ServiceTextEncoder(RetrieverClient.from_settings(local.settings))
        caches: dict[str, str] = {}  # set-up: the agent's vector cache ("off", "per-conversation", "shared")
        if args.compare == "encoders":
            setups = {
                "service (HTTP /v1/encode/texts)": (service_encoder, local.settings),
                "in-process model (before)": (local.service.model, local.settings),
            }
            encodings = {name: "base64" for name in setups}
        else:
            readers = {  # set-up: (answer model, re-ranker pool, the agent's vector cache)
                "text side, re-ranker off (before)": ("none", 0, "off"),
                "answer model, re-ranker off": ("auto", 0, "off"),
                FULL_LISTS: ("auto", 1000, "off"),
                FULL_BASE64: ("auto", 1000, "off"),
                "answer model, re-ranker 1000, bare pool + lookup of the kept": ("auto", 1000, "off"),
                "answer model, re-ranker 3000, bare pool + lookup of the kept (before)": (
                    "auto",
                    3000,
                    "off",
                ),
                f"{CACHED}, emptied at each conversation": ("auto", 3000, "per-conversation"),
                f"{CACHED}, shared by the conversations (default)": ("auto", 3000, "shared"),
            }
            setups = {
                name: (
                    service_encoder,
                    local.settings.model_copy(update={"answer_model": answers, "rerank_pool": pool}),
                )
                for name, (answers, pool, _) in readers.items()
            }
            caches = {name: cache for name, (_, _, cache) in readers.items()}
            encodings: dict[str, VectorEncoding] = {name: "base64" for name in setups}
            encodings[FULL_LISTS] = "floats"
        engines, warm_up = {}, {}
        for name, (encoder, settings_) in setups.items():
            questioner = build_questioner(settings_, "info_gain", text_encoder=encoder, bank=bank)
            started = time.perf_counter()
            questioner.warm_up()
            warm_up[name] = time.perf_counter() - started
            searcher: Searcher = ServiceSearcher(
                RetrieverClient.from_settings(settings_),
                vector_encoding=encodings[name],
                vector_cache=None if caches.get(name, "off") == "off" else build_vector_cache(settings_),
            )
            if name in (FULL_LISTS, FULL_BASE64):
                searcher = FullHitsSearcher(searcher)
            engines[name] = build_engine(settings_, searcher=searcher, questioner=questioner)
        turns: dict[str, list[float]] = {name: [] for name in engines}
        run = uuid.uuid4().hex[:8]  # fresh conversations: the state store in --home outlives a run
        for i in range(args.conversations):
            order = list(engines) if i % 2 == 0 else list(reversed(engines))
            for name in order:
                if caches.get(name) == "per-conversation":
                    engines[name].searcher.vector_cache = build_vector_cache(engines[name].settings)
                turns[name] += _conversation(
                    engines[name], f"{run}-{i}-{name}", CAPTIONS[i % len(CAPTIONS)], args.answers
                )

    print(f"\n{args.gallery} images, {args.conversations} conversations x (1 + {args.answers}) turns\n")
    label = "answers embedded by" if args.compare == "encoders" else "answers read by"
    print(f"| {label} | bank warm-up s | turns | p50 ms | p95 ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, times in turns.items():
        ms = sorted(t * 1000 for t in times)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(
            f"| {name} | {warm_up[name]:.1f} | {len(ms)} | {statistics.median(ms):.0f} | {p95:.0f} "
            f"| {statistics.fmean(ms):.0f} |"
        )


if __name__ == "__main__":
    main()
