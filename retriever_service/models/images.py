"""Decoding image files for the encoder: safe (never raises on a bad file) and in background threads.

``iter_image_batches`` keeps a bounded number of files decoding in a thread pool while the caller runs
the model on the previous batch (PIL releases the GIL while decoding), and yields batches in input order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from retriever_service.decode import DecodeError, open_rgb


@dataclass(frozen=True)
class DecodedImage:
    """A file decoded to RGB, ready for ``RetrievalModel.encode_images``."""

    path: Path
    image: Image.Image
    width: int  # as displayed (after EXIF rotation), before any ``max_side`` reduction
    height: int
    format: str | None  # PIL's name, e.g. "JPEG"
    mime: str | None  # e.g. "image/jpeg"


@dataclass(frozen=True)
class ImageFailure:
    """A file that could not be used, with a reason for people."""

    path: Path
    reason: str


@dataclass
class ImageBatch:
    """One batch of inputs: the decoded images and the files that failed (input order kept in each)."""

    images: list[DecodedImage] = field(default_factory=list)
    failures: list[ImageFailure] = field(default_factory=list)


def load_image(path: str | os.PathLike[str], *, max_side: int | None = None) -> DecodedImage | ImageFailure:
    """Decode one file of any supported format (:mod:`retriever_service.decode`). Never raises: a missing,
    unreadable, corrupt, truncated, oversized, unsafe or non-image file gives an :class:`ImageFailure` with
    the reason.

    ``max_side`` (optional) shrinks big images while decoding (JPEG draft mode + thumbnail), which is much
    faster for photos when the model only needs a few hundred pixels; vectors (SVG, PDF) are rendered at it.
    """
    path = Path(path)
    try:
        opened = open_rgb(path, max_side=max_side)
    except FileNotFoundError:
        return ImageFailure(path, "file not found")
    except IsADirectoryError:
        return ImageFailure(path, "is a directory, not an image file")
    except PermissionError:
        return ImageFailure(path, "permission denied")
    except DecodeError as error:
        return ImageFailure(path, str(error))
    except OSError as error:  # I/O errors
        return ImageFailure(path, f"cannot read: {error.strerror or error}")
    return DecodedImage(
        path=path,
        image=opened.image,
        width=opened.width,
        height=opened.height,
        format=opened.format,
        mime=opened.mime,
    )


def iter_image_batches(
    paths: Iterable[str | os.PathLike[str]],
    batch_size: int = 32,
    *,
    workers: int | None = None,
    max_side: int | None = None,
    prefetch_batches: int = 2,
) -> Iterator[ImageBatch]:
    """Decode ``paths`` in a thread pool and yield :class:`ImageBatch` es of ``batch_size`` inputs each
    (decoded + failed; the last batch may be smaller). Never raises on a bad file.

    ``paths`` is consumed lazily; at most ``batch_size * prefetch_batches`` files are decoding or waiting
    at any time, so the next batches decode while the caller runs the model. Closing the generator early
    (``break``, Ctrl-C) cancels the pending work.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    workers = workers or min(4, os.cpu_count() or 1)
    window = max(batch_size * max(prefetch_batches, 1), workers)
    source = iter(paths)
    pending: deque[Future[DecodedImage | ImageFailure]] = deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chatir-decode")
    try:

        def refill() -> None:
            while len(pending) < window:
                try:
                    path = next(source)
                except StopIteration:
                    return
                pending.append(executor.submit(load_image, path, max_side=max_side))

        refill()
        while pending:
            batch = ImageBatch()
            while pending and len(batch.images) + len(batch.failures) < batch_size:
                result = pending.popleft().result()
                (batch.images if isinstance(result, DecodedImage) else batch.failures).append(result)
            refill()
            yield batch
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
