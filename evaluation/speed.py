"""How fast is fixed-dialog evaluation? ``python -m evaluation.speed --model PATH [--dialogs JSON]``.

Times the whole per-dialog path of :func:`evaluate_fixed_dialogs` (dialog texts, text encoding, ranking)
for N dialogs x (R+1) rounds against a corpus of C image embeddings. The corpus embeddings are random unit
vectors here: in a real run they come from the on-disk cache after the first run, so this is the cost of
every run after the first. Prints a small table; nothing is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from chatir.dialog import Dialog, Round
from evaluation.data import ImageCorpus, TargetDialog, load_chatir_dialogs
from evaluation.harness import evaluate_fixed_dialogs


def synthetic_dialogs(n: int, rounds: int, seed: int = 0) -> list[Dialog]:
    """Dialogs of realistic length (~8-word caption, ~8-word rounds) when no dialog file is given."""
    rng = np.random.default_rng(seed)
    words = [
        "red",
        "blue",
        "green",
        "small",
        "large",
        "left",
        "right",
        "top",
        "bottom",
        "striped",
        "dotted",
        "circle",
        "square",
        "triangle",
    ]

    def sentence(k: int) -> str:
        return " ".join(rng.choice(words, size=k))

    return [
        Dialog(
            caption=sentence(9),
            rounds=[Round(question=sentence(6) + "?", answer=sentence(3)) for _ in range(rounds)],
        )
        for _ in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder, hub id or 'starter'")
    parser.add_argument("--dialogs", type=Path, help="ChatIR-format dialog JSON (default: synthetic dialogs)")
    parser.add_argument(
        "--world-seed", type=int, help="use the procedural world's dialogs of this seed instead"
    )
    parser.add_argument("--n-dialogs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--corpus-size", type=int, default=50_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, help="texts per forward pass (default: the model's)")
    args = parser.parse_args()

    import torch

    from retriever_service.models import load_model

    model = load_model(args.model, device=args.device)
    if args.batch_size:
        model.batch_size = args.batch_size
    if args.dialogs:
        loaded = load_chatir_dialogs(args.dialogs)
        dialogs = [loaded[i % len(loaded)].dialog for i in range(args.n_dialogs)]
    elif args.world_seed is not None:
        from world.dialogs import dialog_for

        dialogs = [dialog_for(args.world_seed, i, rounds=args.rounds) for i in range(args.n_dialogs)]
    else:
        dialogs = synthetic_dialogs(args.n_dialogs, args.rounds)

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.corpus_size, model.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    corpus = ImageCorpus(root=Path("."), paths=tuple(f"img{i:06d}" for i in range(args.corpus_size)))
    targets = rng.choice(args.corpus_size, size=len(dialogs), replace=False)
    items = [TargetDialog(img=corpus.paths[t], dialog=d) for t, d in zip(targets, dialogs, strict=True)]

    started = time.perf_counter()
    result, _ranks = evaluate_fixed_dialogs(
        model, items, corpus, name="speed", rounds=args.rounds, corpus_vectors=vectors, progress=True
    )
    total = time.perf_counter() - started
    t = result.timings_s
    print(
        f"model {model.model_id} (dim {model.dim}, {type(model).__name__}), batch {model.batch_size}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"{len(items)} dialogs x {args.rounds + 1} rounds = {result.details['n_texts']} texts "
        f"({result.details['unique_texts']} unique) against {args.corpus_size} images"
    )
    print("| stage | seconds |\n|---|---:|")
    for stage in ("build_texts", "encode_texts", "rank"):
        print(f"| {stage} | {t.get(stage, 0.0):.1f} |")
    print(f"| total | {total:.1f} |")


if __name__ == "__main__":
    main()
