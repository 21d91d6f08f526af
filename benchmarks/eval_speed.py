"""Fixed-dialog evaluation speed: the text encoder's paths side by side on the same dialogs, and the ranks each
gives (they must not change).

    python benchmarks/eval_speed.py                          # starter, 300 dialogs x 11 rounds, 50K images
    python benchmarks/eval_speed.py --n-dialogs 2000         # the full-size run (2,000 x 11 x 50K)
    python benchmarks/eval_speed.py --paths fp32,onnx,int8 --batch-sizes 32,128
    python benchmarks/eval_speed.py --paths onnx --batch-orders chars,tokens --onnx-attention native,eager

Runs :func:`evaluation.harness.evaluate_fixed_dialogs`' own steps -- the dialog texts (each distinct text once,
shortest first: batching by length), encoding in chunks of 512 texts, ranking every target among
``--corpus-size`` image vectors -- once per text path, the paths taking turns chunk by chunk so that load from
other processes hits them alike. The corpus is random unit vectors (the real run reads cached image embeddings,
so this is the cost of every run after the first). Dialogs: the procedural world's (seed 7) at 10 rounds.
``--batch-orders`` and ``--onnx-attention`` add the layouts the product used before 2026-12-02 (batches of
the most characters first; ONNX traced through the model's own sdpa attention) for a side-by-side. Reported per
variant: seconds encoding and ranking, the total, its projection to 2,000 dialogs (linear in the
number of texts), how many ranks differ from the first row's (and by how much at most) and how many targets
moved into or out of the top 10. On random corpus vectors scores are packed closely (50K random directions), so
1e-7 differences between two fp32 engines can swap neighbours; the test suite checks real rankings.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models import load, load_line, machine_line


def _by_characters(self, texts: list[str]) -> list[int]:
    """The batch order before 2026-12-02: most characters first."""
    return sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)


def _variant(name: str, path: str, batch: int, order: str, attention: str | None):
    """The model ``name`` on text ``path`` in batches of ``batch`` ordered by ``order``; an onnx path exported
    with ``attention``."""
    from retriever_service.models.fastpath import apply_text_fastpath
    from retriever_service.models.onnx_text import OnnxTextFeatures, export_text_onnx, open_session

    model = load(name)
    if attention == "native":
        # exported as the model computes attention, then installed as the fast path installs its export
        onnx_bytes, names = export_text_onnx(model, attention="native")
        model.text_vectors = OnnxTextFeatures(open_session(onnx_bytes), names)
    else:
        report = apply_text_fastpath(model, path)  # type: ignore[arg-type]
        if report.path != path:
            raise SystemExit(f"{path} is not available here: {report.reason}")
    if order == "chars":
        model._longest_first = types.MethodType(_by_characters, model)
    model.batch_size = batch
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starter")
    parser.add_argument("--paths", default="fp32,onnx", help="text paths: fp32, onnx, int8")
    parser.add_argument("--batch-sizes", default="32", help="texts per forward pass (each path at each size)")
    parser.add_argument(
        "--batch-orders",
        default="tokens",
        help="how texts are batched: tokens (the product), chars (before 2026-12-02)",
    )
    parser.add_argument(
        "--onnx-attention",
        default="eager",
        help="the onnx path's exported attention: eager (the product), native (the model's sdpa, before 2026-12-02)",
    )
    parser.add_argument("--n-dialogs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--corpus-size", type=int, default=50_000)
    args = parser.parse_args()

    from evaluation.harness import dialog_round_texts
    from evaluation.metrics import rank_of_targets
    from world.dialogs import dialog_for

    variants = {}
    for path in args.paths.split(","):
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            for order in args.batch_orders.split(","):
                for attention in args.onnx_attention.split(",") if path == "onnx" else [None]:
                    layout = ", ".join(x for x in (order, attention) if x)
                    variants[f"{path} (batch {batch}, {layout})"] = _variant(
                        args.model, path, batch, order, attention
                    )
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
