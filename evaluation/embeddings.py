"""Corpus image embeddings and dialog-text embeddings, cached on disk, resumable.

Image cache key: the model id, its embedding size, a fingerprint of its image tower (the embedding of a fixed
synthetic probe image, so a retrained model with the same id gets a new key) and a hash of the corpus file
list (relative paths, sizes, modification times, in corpus order). Text cache key: the model id, size, a
fingerprint of its text tower (a probe sentence: dialog training changes only the text side) and a hash of
the texts. Work is saved in parts, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from evaluation.data import EvaluationInputError, ImageCorpus
from retriever_service.models.images import iter_image_batches

PART_SIZE = 2048
CACHE_VERSION = 1


class ImageEncoder(Protocol):
    model_id: str
    dim: int

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def probe_image() -> Image.Image:
    """A fixed, deterministic RGB test pattern (gradients and blocks)."""
    y, x = np.mgrid[0:96, 0:96]
    pixels = np.stack([x * 255 // 95, y * 255 // 95, ((x // 16 + y // 16) % 2) * 255], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), mode="RGB")


def model_fingerprint(model: ImageEncoder) -> str:
    """Hash of the model id, size and image-tower output on :func:`probe_image`."""
    probe = np.asarray(model.encode_images([probe_image()]), dtype=np.float32)
    digest = hashlib.sha256()
    digest.update(f"{model.model_id}|{model.dim}|".encode())
    digest.update(np.round(probe, 3).tobytes())
    return digest.hexdigest()


PROBE_TEXT = "a red circle above a small blue square, is there a dog? no, what colour is the sky? grey"


class TextEncoder(Protocol):
    model_id: str
    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def text_fingerprint(model: TextEncoder) -> str:
    """Hash of the model id, size and text-tower output on :data:`PROBE_TEXT`."""
    probe = np.asarray(model.encode_texts([PROBE_TEXT]), dtype=np.float32)
    digest = hashlib.sha256()
    digest.update(f"{model.model_id}|{model.dim}|text|".encode())
    digest.update(np.round(probe, 3).tobytes())
    return digest.hexdigest()


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(model_id))[-40:].strip("_") or "model"


def corpus_fingerprint(corpus: ImageCorpus) -> str:
    """Hash of the ordered file list with each file's size and modification time."""
    digest = hashlib.sha256()
    for relative in corpus.paths:
        try:
            stat = (corpus.root / relative).stat()
        except OSError:
            raise EvaluationInputError(f"corpus image {corpus.root / relative} is missing") from None
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_folder(cache_root: Path, model: ImageEncoder, corpus: ImageCorpus) -> Path:
    slug = _slug(model.model_id)
    key = hashlib.sha256(
        f"v{CACHE_VERSION}|{model_fingerprint(model)}|{corpus_fingerprint(corpus)}".encode()
    ).hexdigest()[:20]
    return Path(cache_root) / f"{slug}-{key}"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def corpus_embeddings(
    model: ImageEncoder,
    corpus: ImageCorpus,
    cache_root: Path | None,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """``(len(corpus), dim)`` float32 image embeddings in corpus order, from the cache when present.

    ``cache_root=None`` computes without caching.
    """
    folder = cache_folder(cache_root, model, corpus) if cache_root is not None else None
    final = folder / "embeddings.npy" if folder else None
    if final is not None and final.is_file():
        vectors = np.load(final)
        if vectors.shape == (len(corpus), model.dim):
            return vectors
    parts_dir = folder / "parts" if folder else None
    if parts_dir is not None:
        parts_dir.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(
            json.dumps(
                {
                    "model_id": str(model.model_id),
                    "dim": model.dim,
                    "root": str(corpus.root),
                    "n_images": len(corpus),
                },
                indent=1,
            )
        )

    n_parts = (len(corpus) + PART_SIZE - 1) // PART_SIZE
    parts: list[np.ndarray] = []
    bar = tqdm(total=len(corpus), desc="embedding corpus images", unit="img", disable=not progress)
    try:
        for part in range(n_parts):
            start, stop = part * PART_SIZE, min((part + 1) * PART_SIZE, len(corpus))
            part_file = parts_dir / f"part-{part:05d}.npy" if parts_dir else None
            if part_file is not None and part_file.is_file():
                cached = np.load(part_file)
                if cached.shape == (stop - start, model.dim):
                    parts.append(cached)
                    bar.update(stop - start)
                    continue
            paths = [corpus.absolute(i) for i in range(start, stop)]
            chunks = []
            for batch in iter_image_batches(paths, batch_size):
                if batch.failures:
                    failure = batch.failures[0]
                    raise EvaluationInputError(
                        f"corpus image {failure.path} cannot be used ({failure.reason}); fix or remove it "
                        "(the images embedded so far are kept and the next run resumes)"
                    )
                chunks.append(
                    np.asarray(model.encode_images([d.image for d in batch.images]), dtype=np.float32)
                )
                bar.update(len(batch.images))
            vectors = np.concatenate(chunks)
            if part_file is not None:
                _save_atomic(part_file, vectors)
            parts.append(vectors)
    finally:
        bar.close()

    vectors = np.concatenate(parts) if parts else np.zeros((0, model.dim), dtype=np.float32)
    if final is not None:
        _save_atomic(final, vectors)
        for part_file in parts_dir.glob("part-*.npy"):
            part_file.unlink(missing_ok=True)
        parts_dir.rmdir()
    return vectors


def text_embeddings(
    model: TextEncoder,
    texts: Sequence[str],
    cache_root: Path | None,
    *,
    chunk_size: int = 512,
    progress: bool = True,
    desc: str = "encoding dialogs",
) -> np.ndarray:
    """``(len(texts), dim)`` embeddings; each distinct text encoded once, shortest first (little padding).

    With ``cache_root`` the work is saved every ``chunk_size`` texts (an interrupted run resumes) and the
    finished result is kept, so evaluating the same dialogs with the same model again is instant.
    """
    unique = sorted(set(texts), key=lambda text: (len(text), text))  # deterministic across processes
    position = {text: i for i, text in enumerate(unique)}
    folder = None
    if cache_root is not None:
        digest = hashlib.sha256(f"v{CACHE_VERSION}|{text_fingerprint(model)}|".encode())
        for text in unique:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        folder = Path(cache_root) / f"{_slug(model.model_id)}-{digest.hexdigest()[:20]}"
        final = folder / "vectors.npy"
        if final.is_file():
            cached = np.load(final)
            if cached.shape == (len(unique), model.dim):
                return cached[[position[t] for t in texts]]
        folder.mkdir(parents=True, exist_ok=True)

    vectors = np.empty((len(unique), model.dim), dtype=np.float32)
    with tqdm(total=len(unique), desc=desc, unit="text", disable=not progress) as bar:
        for part, start in enumerate(range(0, len(unique), chunk_size)):
            chunk = unique[start : start + chunk_size]
            part_file = folder / f"part-{part:05d}.npy" if folder is not None else None
            if part_file is not None and part_file.is_file():
                saved = np.load(part_file)
                if saved.shape == (len(chunk), model.dim):
                    vectors[start : start + len(chunk)] = saved
                    bar.update(len(chunk))
                    continue
            encoded = np.asarray(model.encode_texts(chunk), dtype=np.float32)
            if part_file is not None:
                _save_atomic(part_file, encoded)
            vectors[start : start + len(chunk)] = encoded
            bar.update(len(chunk))
    if folder is not None:
        _save_atomic(folder / "vectors.npy", vectors)
        for part_file in folder.glob("part-*.npy"):
            part_file.unlink(missing_ok=True)
    return vectors[[position[t] for t in texts]]
