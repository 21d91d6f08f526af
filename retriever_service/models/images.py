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

from PIL import Image, ImageOps, UnidentifiedImageError

_EXIF_ORIENTATION = 0x0112
_ORIENTATIONS_SWAPPING_SIDES = (5, 6, 7, 8)


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


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparent areas on white (``convert("RGB")`` alone would turn them black)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def load_image(path: str | os.PathLike[str], *, max_side: int | None = None) -> DecodedImage | ImageFailure:
    """Decode one file. Never raises: a missing, unreadable, corrupt, truncated, oversized or non-image
    file gives an :class:`ImageFailure` with the reason.

    ``max_side`` (optional) shrinks big images while decoding (JPEG draft mode + thumbnail), which is much
    faster for photos when the model only needs a few hundred pixels.
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            image_format = opened.format
            mime = opened.get_format_mimetype() if hasattr(opened, "get_format_mimetype") else None
            width, height = opened.size
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                # PIL only warns between 1x and 2x its limit; treat the whole range as a bomb.
                raise Image.DecompressionBombError(
                    f"{width}x{height} pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS} pixels"
                )
            if opened.getexif().get(_EXIF_ORIENTATION) in _ORIENTATIONS_SWAPPING_SIDES:
                width, height = height, width
            if max_side is not None:
                opened.draft("RGB", (max_side, max_side))
            upright = ImageOps.exif_transpose(opened)
            upright.load()
            if max_side is not None:
                upright.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
            rgb = _to_rgb(upright)
    except FileNotFoundError:
        return ImageFailure(path, "file not found")
    except IsADirectoryError:
        return ImageFailure(path, "is a directory, not an image file")
    except PermissionError:
        return ImageFailure(path, "permission denied")
    except UnidentifiedImageError:
        return ImageFailure(path, "not an image (unrecognised file format)")
    except Image.DecompressionBombError as error:
        return ImageFailure(path, f"image too large (decompression-bomb protection): {error}")
    except OSError as error:  # truncated or corrupt data, I/O errors
        return ImageFailure(path, f"corrupt or truncated image: {error}")
    except Exception as error:  # noqa: BLE001 -- PIL plugins raise SyntaxError, ValueError, ... on bad data
        return ImageFailure(path, f"cannot decode image: {type(error).__name__}: {error}")
    return DecodedImage(path=path, image=rgb, width=width, height=height, format=image_format, mime=mime)


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
