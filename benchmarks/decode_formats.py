"""How long the service takes to decode one file of each supported format, at indexing and thumbnail sizes.

    python benchmarks/decode_formats.py [--side 2016] [--repeat 5]

Writes a photo-sized picture (``--side`` x 3/4 of it: a smooth gradient with noise, so codecs work as on a
photo) in every raster format, a 40-shape SVG logo and a 10-page A4 PDF, then prints one table: file size, and
milliseconds per ``open_rgb`` at the indexer's size (768 px) and at the thumbnail size (256 px), median of
``--repeat`` runs, one thread. Timings on a shared machine are noisy: look at the load average printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def _photo(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy)


def _svg(path: Path) -> None:
    shapes = "".join(
        f'<circle cx="{20 + 23 * i % 460}" cy="{30 + 37 * i % 300}" r="{8 + i % 30}" '
        f'fill="rgb({i * 6 % 255},{i * 40 % 255},{i * 90 % 255})" opacity="0.7"/>'
        for i in range(40)
    )
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="480" height="320" viewBox="0 0 480 320">'
        f'<rect width="480" height="320" fill="#f4f4f4"/>{shapes}<text x="20" y="300" font-size="28">ACME</text></svg>'
    )


def _pdf(path: Path) -> None:
    pages = [_photo(595, 842).point(lambda v, k=k: (v + 25 * k) % 256) for k in range(10)]  # A4 at 72 dpi
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72)


def _writers(photo: Image.Image) -> dict[str, Callable[[Path], None]]:
    import pillow_heif

    pillow_heif.register_heif_opener()
    deep = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return {
        "photo.jpg": lambda p: photo.save(p, "JPEG", quality=90),
        "photo.png": lambda p: photo.save(p, "PNG"),
        "photo.webp": lambda p: photo.save(p, "WEBP", quality=90),
        "photo.heic": lambda p: photo.save(p, "HEIF", quality=90),
        "photo.avif": lambda p: photo.save(p, "AVIF", quality=80, speed=8),
        "cmyk.jpg": lambda p: photo.convert("CMYK").save(p, "JPEG", quality=90),
        "grey16.png": lambda p: Image.fromarray(deep).save(p, "PNG"),
        "pages.tiff": lambda p: photo.save(p, "TIFF", save_all=True, append_images=[photo.rotate(180)]),
        "logo.svg": _svg,
        "deck.pdf": _pdf,
    }


def _median_ms(path: Path, side: int, repeat: int) -> float:
    from retriever_service.decode import open_rgb

    open_rgb(path, max_side=side)  # warm-up (fonts, codecs)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        open_rgb(path, max_side=side)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2016, help="width of the photo-sized picture")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    photo = _photo(args.side, args.side * 3 // 4)
    print(f"picture {photo.width}x{photo.height}; load average {os.getloadavg()[0]:.2f}\n")
    print("| file | bytes | ms at 768 px | ms at 256 px |\n| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for name, write in _writers(photo).items():
            path = Path(folder) / name
            write(path)
            index_ms = _median_ms(path, 768, args.repeat)
            thumb_ms = _median_ms(path, 256, args.repeat)
            print(f"| {name} | {path.stat().st_size:,} | {index_ms:.1f} | {thumb_ms:.1f} |")


if __name__ == "__main__":
    main()
