"""Files of every supported format, and broken ones, written by the libraries themselves (no binary fixtures).

Each good sample is one solid colour (its first frame or page; later frames and pages have other colours), so a
decoder that reads the wrong frame, clips 16-bit values or ignores CMYK shows it in the pixels.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 32)


@dataclass(frozen=True)
class Sample:
    name: str
    colour: tuple[int, int, int]  # what the first frame / page looks like in RGB
    tolerance: int  # lossy codecs drift a little
    format: str  # the name open_rgb reports


def _frames(path: Path, colours: list[tuple[int, int, int]], fmt: str, **options) -> None:
    frames = [Image.new("RGB", SIZE, colour) for colour in colours]
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], **options)


def _png16_rgb(path: Path, rgb16: tuple[int, int, int]) -> None:
    """A 48-bit PNG (Pillow cannot write one): the format is simple enough to write with zlib."""
    width, height = SIZE
    row = b"\x00" + struct.pack(">3H", *rgb16) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )


def _gray16(path: Path, value: int, fmt: str) -> None:
    Image.fromarray(np.full(SIZE[::-1], value, dtype=np.uint16)).save(path, fmt)


def _heic(path: Path, colour: tuple[int, int, int]) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    Image.new("RGB", SIZE, colour).save(path, "HEIF", quality=95)


def _svg(colour: str, *, width: str = 'width="48" height="32"', extra: str = "") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" {width} '
        f'viewBox="0 0 48 32"><rect width="48" height="32" fill="{colour}"/>{extra}</svg>'
    )


def _pdf(path: Path, colours: list[tuple[int, int, int]]) -> None:
    _frames(path, colours, "PDF", resolution=72)


GOOD: dict[Sample, Callable[[Path], None]] = {
    Sample("photo.heic", (200, 40, 40), 12, "HEIF"): lambda p: _heic(p, (200, 40, 40)),
    Sample("photo.avif", (40, 160, 60), 12, "AVIF"): lambda p: Image.new("RGB", SIZE, (40, 160, 60)).save(
        p, "AVIF", quality=95
    ),
    Sample("logo.svg", (32, 80, 224), 1, "SVG"): lambda p: p.write_text(
        _svg("#2050e0", extra='<use xlink:href="#none"/><rect fill="url(#missing)" width="0" height="0"/>')
    ),
    Sample("icon.svgz", (0, 150, 150), 1, "SVG"): lambda p: p.write_bytes(
        gzip.compress(_svg("rgb(0,150,150)", width="").encode())
    ),
    Sample("slides.pdf", (230, 120, 0), 3, "PDF"): lambda p: _pdf(p, [(230, 120, 0), (0, 0, 0)]),
    Sample("animated.gif", (250, 220, 0), 0, "GIF"): lambda p: _frames(
        p, [(250, 220, 0), (0, 0, 255)], "GIF", duration=100, loop=0
    ),
    Sample("animated.webp", (120, 20, 160), 0, "WEBP"): lambda p: _frames(
        p, [(120, 20, 160), (0, 255, 0)], "WEBP", lossless=True, duration=100
    ),
    Sample("pages.tiff", (90, 60, 30), 0, "TIFF"): lambda p: _frames(
        p, [(90, 60, 30), (255, 255, 255)], "TIFF"
    ),
    Sample("print.jpg", (0, 255, 255), 6, "JPEG"): lambda p: Image.new("CMYK", SIZE, (255, 0, 0, 0)).save(
        p, "JPEG", quality=95
    ),
    Sample("print.tif", (255, 255, 0), 0, "TIFF"): lambda p: Image.new("CMYK", SIZE, (0, 0, 255, 0)).save(
        p, "TIFF"
    ),
    Sample("scan16.png", (160, 160, 160), 0, "PNG"): lambda p: _gray16(p, 0xA011, "PNG"),
    Sample("scan16.tif", (64, 64, 64), 0, "TIFF"): lambda p: _gray16(p, 0x40F9, "TIFF"),
    Sample("deep48.png", (16, 128, 240), 0, "PNG"): lambda p: _png16_rgb(p, (0x1080, 0x80F0, 0xF010)),
    Sample("depth32.tif", (127, 127, 127), 1, "TIFF"): lambda p: Image.fromarray(
        np.full(SIZE[::-1], 0x8000, dtype=np.int32)
    ).save(p, "TIFF"),
    Sample("float.tif", (191, 191, 191), 1, "TIFF"): lambda p: Image.fromarray(
        np.full(SIZE[::-1], 0.75, dtype=np.float32)
    ).save(p, "TIFF"),
}


def _truncated(make: Callable[[Path], None], keep: float) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        make(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return write


def _empty_pdf(path: Path) -> None:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    document.save(str(path))
    document.close()


def _bomb(path: Path) -> None:
    """12000x8000 pixels (above Pillow's 89 M limit) in a few kilobytes."""
    Image.new("1", (12000, 8000)).save(path, "PNG")


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "cut.heic": (_truncated(lambda p: _heic(p, (1, 2, 3)), 0.5), "corrupt"),
    "cut.avif": (_truncated(lambda p: Image.new("RGB", SIZE, "red").save(p, "AVIF"), 0.5), "corrupt"),
    "cut.pdf": (_truncated(lambda p: _pdf(p, [(1, 2, 3)]), 0.4), "corrupt"),
    "cut.svg": (lambda p: p.write_text(_svg("red")[:70]), "corrupt or truncated SVG"),
    "empty.pdf": (_empty_pdf, "PDF has no pages"),
    "href.svg": (
        lambda p: p.write_text(_svg("red", extra='<image href="/etc/passwd" width="9" height="9"/>')),
        "unsafe SVG: it refers to '/etc/passwd'",
    ),
    "remote.svg": (
        lambda p: p.write_text(_svg("red", extra='<image xlink:href="https://example.com/x.png"/>')),
        "unsafe SVG: it refers to 'https://example.com/x.png'",
    ),
    "css.svg": (
        lambda p: p.write_text(_svg("red", extra="<style>rect { fill: url('file:///etc/hosts') }</style>")),
        "unsafe SVG: it refers to 'file:///etc/hosts'",
    ),
    "entity.svg": (
        lambda p: p.write_text(
            '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + _svg("red", extra="<text>&x;</text>")
        ),
        "unsafe SVG: entity 'x' refers to 'file:///etc/passwd'",
    ),
    "bomb.png": (_bomb, "decompression-bomb"),
}


def write_good(folder: Path) -> dict[str, tuple[Path, Sample]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for sample, make in GOOD.items():
        make(folder / sample.name)
        out[sample.name] = (folder / sample.name, sample)
    return out


def write_broken(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (make, reason) in BROKEN.items():
        make(folder / name)
        out[name] = (folder / name, reason)
    return out


def centre_colour(image: Image.Image) -> tuple[int, int, int]:
    rgb = image.convert("RGB")
    return rgb.getpixel((rgb.width // 2, rgb.height // 2))  # type: ignore[return-value]


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))
