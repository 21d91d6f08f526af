"""Indexing speed: the whole pipeline against the bare model forward on the same images, in one run.

    python benchmarks/index.py                                   # CLIP-B/16-sized (random) + starter, 200 photos
    python benchmarks/index.py --models starter --images 200,5000
    python benchmarks/index.py --models clip-b16 --images 5000 --variants bare,pipeline  # ~25 min a row here
    python benchmarks/index.py --device cuda --dtypes float32,float16,bfloat16 --models clip-b16,blip-base

Images are JPEG photos of 640x480 (smooth random colour fields with noise, so they compress like photos),
written once to a temporary folder. For each model and image count, side by side:

* ``bare forward``  -- the model's image forward alone (``encode_pixels``) over batches already decoded and
                        preprocessed before the clock starts: the ceiling;
* ``pipeline``      -- ``index_paths`` into a fresh embedded store, as ``chatir index`` runs it: hashing and
                        decoding in the thread pool beside the model, preprocessing (``FastPixels``) batch by
                        batch in the main thread, then the upserts;
* ``pipeline, processor`` -- the same with transformers' own (PIL-backend) image processor, what indexing
                        did before.

The start-up table times what ``chatir index`` pays before its first image: importing the command's modules
(subprocess, best of 3) and loading the model.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models import DTYPES, REPO, load, load_line, machine_line, torch_dtype

VARIANTS = {"bare": "bare forward", "pipeline": "pipeline", "processor": "pipeline, processor"}


def write_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 640x480 JPEGs (quality 90) of smooth colour fields with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        field = np.asarray(
            Image.fromarray(coarse).resize((640, 480), Image.Resampling.BICUBIC), dtype=np.int16
        )
        noisy = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        path = folder / f"photo{i:05d}.jpg"
        Image.fromarray(noisy).save(path, quality=90)
        paths.append(path)
    return paths


def bare_forward(model, paths: list[Path]) -> float:
    """Seconds of ``encode_pixels`` alone over ``paths`` (decoded and preprocessed beforehand)."""
    import torch

    from retriever_service.index.indexer import DECODE_MAX_SIDE
    from retriever_service.models import load_image

    images = [load_image(p, max_side=DECODE_MAX_SIDE).image for p in paths]
    batches = [
        model.preprocess_images(images[i : i + model.batch_size])
        for i in range(0, len(images), model.batch_size)
    ]
    del images
    model.encode_pixels(batches[0][:2])  # warm-up
    started = time.perf_counter()
    with torch.inference_mode():
        for pixels in batches:
            model.encode_pixels(pixels)
    return time.perf_counter() - started


def pipeline(model, folder: Path, home: Path, *, fast: bool) -> float:
    """Seconds of ``index_paths`` over ``folder`` into a new embedded store under ``home``; ``fast``: FastPixels
    (else transformers' processor)."""
    from chatir.settings import Settings
    from retriever_service.index import ImageIndex, index_paths

    kept = model.fast_pixels
    if not fast:
        model.fast_pixels = None
    shutil.rmtree(home, ignore_errors=True)
    index = ImageIndex(Settings(home=home), model.model_id, model.dim, progress=False)
    try:
        started = time.perf_counter()
        report = index_paths(
            [folder],
            model=model,
            index=index,
            progress=False,
        )
        elapsed = time.perf_counter() - started
    finally:
        index.close()
        model.fast_pixels = kept
    assert report.added == len(list(folder.glob("*.jpg"))), report
    return elapsed


def import_seconds() -> float:
    """Best of 3: a fresh interpreter importing what ``chatir index`` imports before the model loads."""
    code = (
        "import retriever_service.cli, retriever_service.service, retriever_service.index, "
        "retriever_service.models, torch, transformers"
    )
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="clip-b16,starter")
    parser.add_argument("--images", default="200", help="comma-separated image counts")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant (median kept)")
    parser.add_argument(
        "--variants", default="bare,pipeline,processor", help="bare, pipeline, processor (comma-separated)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtypes", default="float32", help="float32, float16, bfloat16 (a model per dtype)")
    args = parser.parse_args()
    dtypes = [torch_dtype(d) for d in args.dtypes.split(",")]
    chosen = args.variants.split(",")
    unknown = set(chosen) - set(VARIANTS)
    if unknown or "bare" not in chosen:
        raise SystemExit(
            f"--variants: 'bare' and any of {', '.join(VARIANTS)}; not {', '.join(sorted(unknown))}"
        )
    counts = [int(c) for c in args.images.split(",")]

    print(machine_line(args.device))
    work = Path(tempfile.mkdtemp(prefix="chatir-index-bench-"))
    try:
        rows = []
        for name, dtype in [(m, d) for m in args.models.split(",") for d in dtypes]:
            started = time.perf_counter()
            model = load(name, device=args.device, dtype=dtype)
            load_s = time.perf_counter() - started
            if len(dtypes) > 1:
                name = f"{name} {DTYPES[str(dtype).removeprefix('torch.')]}"
            for n in counts:
                folder = work / f"photos-{n}"
                if not folder.exists():
                    write_photos(folder, n)
                paths = sorted(folder.glob("*.jpg"))
                home = work / "home"
                runs = {
                    "bare": lambda: bare_forward(model, paths),  # noqa: B023 -- called in this loop
                    "pipeline": lambda: pipeline(model, folder, home, fast=True),  # noqa: B023
                    "processor": lambda: pipeline(model, folder, home, fast=False),  # noqa: B023
                }
                variants = {VARIANTS[key]: runs[key] for key in chosen}
                timings: dict[str, list[float]] = {label: [] for label in variants}
                for _ in range(args.repeats):  # the variants take turns, so load hits all alike
                    for label, run in variants.items():
                        timings[label].append(run())
                bare = statistics.median(timings["bare forward"])
                for label in variants:
                    seconds = statistics.median(timings[label])
                    rows.append((name, n, label, seconds, n / seconds, bare / seconds))
            rows.append((name, 0, f"model load {load_s:.1f} s", 0.0, 0.0, 0.0))
        print()
        print("| model | images | variant | s | images/s | of bare forward |")
        print("|---|---:|---|---:|---:|---:|")
        for name, n, label, seconds, rate, share in rows:
            if n == 0:
                print(f"| {name} | | {label} | | | |")
            else:
                print(f"| {name} | {n:,} | {label} | {seconds:.1f} | {rate:.1f} | {share:.0%} |")
        print(
            f"\nstart-up: importing the command's modules {import_seconds():.1f} s (fresh interpreter, best of 3)"
        )
        print(load_line())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
