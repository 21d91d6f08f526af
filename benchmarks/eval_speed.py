"""Fixed-dialog evaluation speed: the text encoder's paths side by side on the same dialogs, and the ranks each
gives (they must not change).

    python benchmarks/eval_speed.py                          # starter, 300 dialogs x 11 rounds, 50K images
    python benchmarks/eval_speed.py --n-dialogs 2000         # the full-size run (2,000 x 11 x 50K)
    python benchmarks/eval_speed.py --paths fp32,onnx,int8 --batch-sizes 32,128

Runs :func:`evaluation.harness.evaluate_fixed_dialogs`' own steps -- the dialog texts (each distinct text once,
shortest first: batching by length), encoding in chunks of 512 texts, ranking every target among
``--corpus-size`` image vectors -- once per text path, the paths taking turns chunk by chunk so that load from
other processes hits them alike. The corpus is random unit vectors (the real run reads cached image embeddings,
so this is the cost of every run after the first). Dialogs: the procedural world's (seed 7) at 10 rounds.
Reported per path: seconds encoding and ranking, the total, its projection to 2,000 dialogs (linear in the
number of texts), how many ranks differ from the first row's (and by how much at most) and how many targets
moved into or out of the top 10. On random corpus vectors scores are packed closely (50K random directions), so
1e-7 differences between two fp32 engines can swap neighbours; the test suite checks real rankings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models import load, load_line, machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starter")
    parser.add_argument("--paths", default="fp32,onnx", help="text paths: fp32, onnx, int8")
    parser.add_argument("--batch-sizes", default="32", help="texts per forward pass (each path at each size)")
    parser.add_argument("--n-dialogs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--corpus-size", type=int, default=50_000)
    args = parser.parse_args()

    from evaluation.harness import dialog_round_texts
    from evaluation.metrics import rank_of_targets
    from retriever_service.models.fastpath import apply_text_fastpath
    from world.dialogs import dialog_for

    variants = {}
    for path in args.paths.split(","):
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            model = load(args.model)
            report = apply_text_fastpath(model, path)  # type: ignore[arg-type]
            if report.path != path:
                raise SystemExit(f"{path} is not available here: {report.reason}")
            model.batch_size = batch
            variants[f"{path} (batch {batch})"] = model
    first = next(iter(variants.values()))
    dialogs = [dialog_for(7, i, rounds=args.rounds) for i in range(args.n_dialogs)]
    started = time.perf_counter()
    texts = dialog_round_texts(first, dialogs, args.rounds)
    build_s = time.perf_counter() - started
    unique = sorted(set(texts), key=lambda t: (len(t), t))
    position = {t: i for i, t in enumerate(unique)}
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((args.corpus_size, first.dim)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    targets = np.tile(rng.choice(args.corpus_size, size=len(dialogs), replace=False), args.rounds + 1)

    encode_s = dict.fromkeys(variants, 0.0)
    vectors = {name: np.empty((len(unique), first.dim), dtype=np.float32) for name in variants}
    for part, start in enumerate(range(0, len(unique), 512)):
        chunk = unique[start : start + 512]
        names = list(variants)
        for name in names[part % len(names) :] + names[: part % len(names)]:
            t0 = time.perf_counter()
            vectors[name][start : start + len(chunk)] = variants[name].encode_texts(chunk)
            encode_s[name] += time.perf_counter() - t0
        print(f"  {start + len(chunk)}/{len(unique)} texts", end="\r", flush=True)
    rows = []
    reference_ranks = None
    scale = 2000 / args.n_dialogs
    for name in variants:
        t0 = time.perf_counter()
        ranks = rank_of_targets(vectors[name][[position[t] for t in texts]], corpus, targets, ties="index")
        rank_s = time.perf_counter() - t0
        if reference_ranks is None:
            reference_ranks = ranks
        changed = (
            f"{int(np.sum(ranks != reference_ranks))}, max {int(np.max(np.abs(ranks - reference_ranks)))}"
        )
        flips = int(np.sum((ranks <= 10) != (reference_ranks <= 10)))
        total = build_s + encode_s[name] + rank_s
        ratio = (build_s + encode_s[next(iter(variants))]) / (build_s + encode_s[name])
        rows.append(
            f"| {name} | {len(texts):,} ({len(unique):,}) | {encode_s[name]:.1f} | {rank_s:.1f} | {total:.1f} | "
            f"**{total * scale:.0f}** | {ratio:.2f}x | {changed} | {flips} |"
        )
    print()
    print(machine_line())
    print(f"{args.model}: {args.n_dialogs} dialogs x {args.rounds + 1} rounds against {args.corpus_size:,} images; "
          f"building the texts took {build_s:.1f} s (shared)\n")  # fmt: skip
    print("| text path | texts (distinct) | encode s | rank s | total s | projected to 2,000 dialogs s | "
          "encode speed-up | ranks changed vs first row (max change) | in/out of top-10 vs first row |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\n{load_line()}")


if __name__ == "__main__":
    main()
