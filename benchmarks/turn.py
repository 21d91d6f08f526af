"""One search turn, text-encoder variants side by side: fp32 eager vs ONNX Runtime vs dynamic int8 (vs torch.compile).

    python benchmarks/turn.py                                   # BLIP-base-sized (random) + starter, 100K images
    python benchmarks/turn.py --models starter --turns 20 --variants fp32,int8,int8-tensor,compile
    python benchmarks/turn.py --device cuda --models blip-base,clip-b16 --variants fp32,fp16,bf16  # a GPU's row

A turn is what ``POST /v1/search`` does after the HTTP layer: the dialog's text (ChatIR's joined form,
truncated to the model's window), the text encoder's forward, a filtered top-10 in the embedded store's search
engine (Qdrant Edge in-process, int8 scan + exact rescoring, over ``--corpus`` clustered 256-d vectors with
channel payloads) and the reply (hits built as the service builds them, serialised to JSON). Dialogs are real
10-round ChatIR (VisDial) dialogs when ``../shared/data/chatir`` has them (~160 tokens), else synthetic ones.

Variants (the text tower + projection only; everything else is shared):
* ``fp32``        -- eager float32, what the product ran before;
* ``onnx``        -- the same fp32 text path in ONNX Runtime (``CHATIR_TEXT_FASTPATH=onnx``; ``auto``'s first
                     choice when faithful);
* ``int8``        -- dynamic int8 Linear layers, per-channel weights (``CHATIR_TEXT_FASTPATH=int8``/``auto``);
* ``int8-tensor`` -- the same with one scale per weight matrix (torch's default ``quantize_dynamic``);
* ``bf16-autocast`` -- bfloat16 autocast around each call (measured, not a product path: see docs/performance.md);
* ``fp16``, ``bf16`` -- a copy of the text tower + projection in that dtype (what ``CHATIR_DEVICE=cuda`` serves:
                     the loader's default dtype on a GPU is float16); meant for ``--device cuda``;
* ``compile``     -- ``torch.compile`` of the fp32 tower (opt-in: compiling takes minutes on 2 cores).
``--device cuda`` runs the model on the GPU (the ONNX and int8 variants are CPU-only); the store and the reply
stay on the CPU, as in the service.
Each turn runs every variant once, in rotating order, so load from other processes hits all alike.
Faithfulness columns: the worst cosine to fp32 over all dialogs, and the share of turns whose top-10 ids equal
fp32's (on random vectors the top-10 is decided by tiny margins: a harsh check; the test suite checks it on
the starter's own images, tests/test_fastpath.py).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models import chatir_dialogs, load, load_line, machine_line, torch_dtype

CPU_ONLY = ("onnx", "int8", "int8-tensor")


def _variant_modules(model, variant: str, originals: dict) -> dict:
    """The text modules of ``variant`` by name (``originals`` are fp32's)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if variant == "fp32":
        return originals
    if variant in ("int8", "int8-tensor"):
        qconfig = per_channel_dynamic_qconfig if variant == "int8" else None
        spec = {torch.nn.Linear: qconfig} if qconfig is not None else {torch.nn.Linear}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {
                n: quantize_dynamic(copy.deepcopy(m), spec, dtype=torch.qint8) for n, m in originals.items()
            }
    if variant == "onnx":
        from retriever_service.models.onnx_text import OnnxTextFeatures, export_text_onnx, open_session

        onnx_bytes, names = export_text_onnx(model)
        return {"text_vectors": OnnxTextFeatures(open_session(onnx_bytes), names)}
    if variant == "bf16-autocast":
        fp32_vectors = type(model).text_vectors.__get__(model)

        def text_vectors(**tokens):
            with torch.autocast(model.device.type, dtype=torch.bfloat16):
                return fp32_vectors(**tokens).float()

        return {"text_vectors": text_vectors}
    if variant in ("fp16", "bf16"):
        dtype = torch_dtype(variant)
        return {n: copy.deepcopy(m).to(dtype) for n, m in originals.items()}
    if variant == "compile":
        return {n: torch.compile(m, dynamic=True) for n, m in originals.items()}
    raise SystemExit(f"unknown variant {variant!r}")


def _install(model, modules: dict) -> None:
    from retriever_service.models.fastpath import _set_module

    model.__dict__.pop("text_vectors", None)  # the onnx and bf16 variants'
    model.clear_text_cache()
    if "text_vectors" in modules:
        model.text_vectors = modules["text_vectors"]
        return
    for name, module in modules.items():
        _set_module(model.model, name, module)


def run_model(name: str, args: argparse.Namespace, stores, scopes) -> list[str]:
    import torch

    from chatir.schemas import SearchResponse
    from retriever_service.models.fastpath import _module_names, probe_cosines
    from retriever_service.service import RetrieverService

    model = load(name, device=args.device)
    variants = args.variants.split(",")
    if model.device.type != "cpu" and set(variants) & set(CPU_ONLY):
        raise SystemExit(f"--variants {', '.join(CPU_ONLY)} run on the CPU only")
    originals = _module_names(model)
    modules = {v: _variant_modules(model, v, originals) for v in variants}
    _install(model, originals)
    dialogs = chatir_dialogs(args.turns)
    texts = [model.dialog_text(d) for d in dialogs]
    tokens = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    data, store = stores(model.dim)
    timings = {v: {"encode": [], "search": [], "reply": [], "total": []} for v in variants}
    embeddings: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    top10: dict[str, list[list[str]]] = {v: [] for v in variants}
    for v in variants:  # warm-up (and compile)
        _install(model, modules[v])
        with torch.inference_mode():
            model.encode_texts(texts[:2])
    for i, dialog in enumerate(dialogs):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        scope = scopes[i % len(scopes)]
        for v in order:
            _install(model, modules[v])
            t0 = time.perf_counter()
            vector = model.encode_texts([model.dialog_text(dialog)])[0]
            t1 = time.perf_counter()
            found = [
                (uuid.UUID(str(p.id)).hex, p.score)
                for p in store.query_points("bench", vector, scope.scope.to_client_filter(), limit=10).points
            ]
            t2 = time.perf_counter()
            hits = [
                RetrieverService._hit(data.record(int(i_, 16)), s, scope.search_filter) for i_, s in found
            ]
            SearchResponse(hits=hits, model=name, took_ms=0.0).model_dump_json()
            t3 = time.perf_counter()
            for key, value in zip(
                ("encode", "search", "reply", "total"), (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True
            ):
                timings[v][key].append(value * 1000)
            embeddings[v].append(vector)
            top10[v].append([i_ for i_, _ in found])
    _install(model, originals)
    rows = []
    reference = np.stack(embeddings["fp32"]) if "fp32" in embeddings else None
    for v in variants:
        t = timings[v]
        cosine = same = "-"
        if reference is not None and v != "fp32":
            cosine = f"{probe_cosines(reference, np.stack(embeddings[v])).min():.5f}"
            same = f"{np.mean([a == b for a, b in zip(top10[v], top10['fp32'], strict=True)]):.2f}"
        ratio = (
            statistics.median(timings["fp32"]["total"]) / statistics.median(t["total"])
            if "fp32" in timings
            else 0.0
        )
        rows.append(
            f"| {name} | {v} | {statistics.median(t['encode']):.1f} | {statistics.median(t['search']):.1f} | "
            f"{statistics.median(t['reply']):.1f} | **{statistics.median(t['total']):.1f}** | "
            f"{_p95(t['total']):.1f} | {ratio:.2f}x | {cosine} | {same} |"
        )
    print(
        f"  {name}: dialogs of {statistics.median(tokens):.0f} tokens (median), {len(dialogs)} turns",
        flush=True,
    )
    return rows


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _project(vectors: np.ndarray, dim: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    out = vectors @ rng.standard_normal((vectors.shape[1], dim)).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="blip-base,starter", help="blip-base, starter or a model folder")
    parser.add_argument("--variants", default="fp32,onnx,int8,int8-tensor")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--corpus", type=int, default=100_000)
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda[:N] (the model's; the store stays on the CPU)"
    )
    args = parser.parse_args()

    from search import fill_edge_store, make_corpus, make_queries  # benchmarks/search.py

    rng = np.random.default_rng(0)
    corpus = make_corpus(args.corpus, 256, "clustered", rng)
    scopes = make_queries(corpus, 20, ["scope"], rng)
    rows = []
    built: dict[int, tuple] = {}
    with tempfile.TemporaryDirectory() as work:

        def stores(dim: int):
            """The corpus (projected to ``dim`` when needed) in the embedded store's engine, once per dimension."""
            if dim not in built:
                vectors = corpus.vectors if dim == corpus.vectors.shape[1] else _project(corpus.vectors, dim)
                data = type(corpus)(vectors, corpus.channels, corpus.public, corpus.sources, corpus.tags)
                print(f"  building the {args.corpus:,}-image store ({dim}-d)", flush=True)
                built[dim] = (data, fill_edge_store(data, Path(work) / f"edge-{dim}", "int8"))
            return built[dim]

        for name in args.models.split(","):
            rows += run_model(name, args, stores, scopes)
        for _, store in built.values():
            store.close()
    print()
    print(machine_line(args.device))
    print(
        f"{args.turns} turns per variant, top-10 under a channel scope over {args.corpus:,} images; ms p50\n"
    )
    print(
        "| model | text encoder | encode | search | reply | turn p50 | turn p95 | speed-up | min cos | same top-10 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\n{load_line()}")


if __name__ == "__main__":
    main()
