"""Open any supported file as an RGB PIL image: the one place that knows file formats.

Every path that reads pictures goes through :func:`open_rgb`: indexing folders and uploads (Slack files are
uploads), captioning, thumbnails. Supported:

* raster formats Pillow reads: JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF (Pillow's own codec), and HEIC/HEIF
  (pillow-heif). Animated GIF/WebP give their first frame, multi-page TIFF its first page;
* CMYK (through its ICC profile when it has one), 16-bit and float images, palettes and transparency (on white);
* SVG, rendered by resvg after :func:`check_svg_is_self_contained`: no external reference is fetched or read,
  the input and the rendered size are bounded;
* PDF, its first page rendered by pdfium (a file is one asset: docs/formats.md says why).

A file that cannot be used raises :class:`DecodeError` whose message says why, for people.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import threading
import xml.parsers.expat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from chatir.errors import ChatIRError

VECTOR_RENDER_SIDE = 1024
"""Longest side SVG and PDF pages are rendered at when the caller sets no ``max_side``."""
MAX_VECTOR_RENDER_SIDE = 2048
"""Longest side a vector is ever rendered at (the largest thumbnail)."""
MAX_SVG_BYTES = 8 * 1024 * 1024
"""SVG markup larger than this (after gunzip for .svgz) is refused."""

_EXIF_ORIENTATION = 0x0112
_ORIENTATIONS_SWAPPING_SIDES = (5, 6, 7, 8)
_PDFIUM_LOCK = threading.Lock()  # pdfium is not thread-safe; files decode in thread pools
_SVG_SUFFIXES = (".svg", ".svgz")
_CSS_URL = re.compile(r"url\(\s*(['\"]?)([^)'\"]*)\1\s*\)", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"@import", re.IGNORECASE)
_SVG_UNITS_PX = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
_SVG_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


class DecodeError(ChatIRError):
    """A file that cannot be used as an image; ``str(error)`` says why."""


@dataclass(frozen=True)
class OpenedImage:
    """A file as an RGB image, with what the index records about it."""

    image: Image.Image  # mode "RGB"
    width: int  # the full picture as displayed (after EXIF rotation; a vector's own size), before reduction
    height: int
    format: str  # e.g. "JPEG", "HEIF", "SVG", "PDF"
    mime: str | None  # e.g. "image/jpeg"


def _register_plugins() -> None:
    try:  # HEIC/HEIF: an optional dependency of the service extra
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


_register_plugins()


def open_rgb(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = None,
    resample: Image.Resampling = Image.Resampling.BICUBIC,
) -> OpenedImage:
    """``path`` decoded to an RGB image no larger than ``max_side`` (if given; rasters are reduced with
    ``resample`` and never enlarged, vectors are rendered at ``max_side`` or :data:`VECTOR_RENDER_SIDE`).
    Raises :class:`DecodeError`, or ``OSError`` subclasses when the file itself cannot be read (missing, a
    folder, no permission)."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(1024)
    if b"%PDF-" in head and _claimed_format(head) is None:  # the header may follow some bytes (PDF 1.7, H.3)
        return _open_pdf(path, max_side)
    if _looks_like_svg(path, head):
        return _open_svg(path, max_side)
    return _open_raster(path, max_side, resample)


# --- raster formats (Pillow + plugins) -----------------------------------------------------------------
def _open_raster(path: Path, max_side: int | None, resample: Image.Resampling) -> OpenedImage:
    try:
        with Image.open(path) as opened:
            image_format = str(opened.format or "unknown")
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
                opened.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale
            upright = ImageOps.exif_transpose(opened)  # the first frame / page of animations and stacks
            upright.load()
            if max_side is not None and upright.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                upright.thumbnail((max_side, max_side), resample)
            rgb = to_rgb(upright)
            if max_side is not None:
                rgb.thumbnail((max_side, max_side), resample)
    except UnidentifiedImageError:
        claimed = _claimed_format(_head(path))
        if claimed:
            raise DecodeError(f"corrupt or truncated {claimed} image (its data cannot be read)") from None
        raise DecodeError("not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as error:
        raise DecodeError(f"image too large (decompression-bomb protection): {error}") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except OSError as error:  # truncated or corrupt data
        raise DecodeError(f"corrupt or truncated image: {error}") from None
    except Exception as error:  # noqa: BLE001 -- plugins raise SyntaxError, ValueError, RuntimeError on bad data
        raise DecodeError(f"corrupt image ({type(error).__name__}: {error})") from None
    return OpenedImage(image=rgb, width=width, height=height, format=image_format, mime=mime)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB of any Pillow mode: colour-managed to sRGB when it carries an ICC profile (CMYK, Display P3),
    16-bit and float channels scaled (not clipped) to 8 bits, transparent areas on white."""
    image = _to_8_bits(image)
    image = _to_srgb(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _to_8_bits(image: Image.Image) -> Image.Image:
    """``I;16*`` / ``I`` / ``F`` (16-bit and float greyscale) as ``L``: ``convert`` alone clips them to white."""
    if image.mode.startswith("I;16"):
        high_bytes = np.asarray(image).astype(np.uint32) >> 8
        return Image.fromarray(high_bytes.astype(np.uint8))
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if image.mode == "F" and top <= 1.0:
            values = values * 255.0
        elif top > 255.0:
            values = values / 257.0  # 16-bit data held in 32-bit integers
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    return image


def _to_srgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if image.mode == "RGBA":
            alpha = image.getchannel("A")
            rgb = ImageCms.profileToProfile(image.convert("RGB"), source, _SRGB, outputMode="RGB")
            assert rgb is not None
            rgb.putalpha(alpha)
            return rgb
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):  # a broken or mismatched profile: convert plainly
        return image
    return converted if converted is not None else image


_SRGB = ImageCms.createProfile("sRGB")


# --- SVG ------------------------------------------------------------------------------------------------
def _looks_like_svg(path: Path, head: bytes) -> bool:
    if path.suffix.lower() in _SVG_SUFFIXES:
        return True
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return (text.startswith((b"<?xml", b"<!--", b"<!doctype svg")) and b"<svg" in text) or text.startswith(
        b"<svg"
    )


def _read_svg(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_SVG_BYTES + 1)
    if data.startswith(b"\x1f\x8b"):  # .svgz
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
                data = unzipped.read(MAX_SVG_BYTES + 1)
        except (OSError, EOFError) as error:
            raise DecodeError(f"corrupt compressed SVG (.svgz): {error}") from None
    if len(data) > MAX_SVG_BYTES:
        raise DecodeError(f"SVG too large: more than {MAX_SVG_BYTES // (1024 * 1024)} MB of markup")
    return data


def check_svg_is_self_contained(data: bytes) -> tuple[float, float]:
    """Parse the SVG (expat: no entity is fetched, entity expansion is bounded) and refuse anything that
    refers outside it: an ``href`` or CSS ``url()`` other than ``#fragment`` or ``data:`` (a nested SVG
    included), ``@import``, external entities. Returns the intrinsic (width, height) in pixels."""
    guard = _SvgGuard()
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.ExternalEntityRefHandler = guard.external_entity
    parser.EntityDeclHandler = guard.entity_decl
    parser.StartElementHandler = guard.start
    parser.EndElementHandler = guard.end
    parser.CharacterDataHandler = guard.text
    parser.ProcessingInstructionHandler = guard.instruction
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as error:
        if "amplification" in str(error):  # expat >= 2.4 stops a "billion laughs" document
            raise DecodeError(
                "unsafe SVG: its entities expand without bound (a 'billion laughs' file)"
            ) from None
        raise DecodeError(f"corrupt or truncated SVG: {error}") from None
    if guard.root is None:
        raise DecodeError("not an SVG image (no <svg> element)")
    return _svg_size(guard.root)


class _SvgGuard:
    """expat handlers that raise :class:`DecodeError` on the first reference outside the document."""

    def __init__(self) -> None:
        self.root: dict[str, str] | None = None
        self._in_style = 0

    def external_entity(self, *_args: object) -> int:
        raise DecodeError("unsafe SVG: it declares an external entity (a file or URL outside the SVG)")

    def entity_decl(self, name: str, *args: object) -> None:
        system_id, public_id = args[3], args[4]  # is_param, value, base, system id, public id, notation
        if system_id or public_id:
            raise DecodeError(
                f"unsafe SVG: entity {name!r} refers to {system_id or public_id!r} outside the SVG"
            )

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        local = tag.rsplit(" ", 1)[-1]
        if self.root is None:
            if local != "svg":
                raise DecodeError(f"not an SVG image (its root element is <{local}>, not <svg>)")
            self.root = attributes
        self._in_style += local == "style"
        for name, value in attributes.items():
            if name.rsplit(" ", 1)[-1] == "href":
                _check_reference(value)
            _check_css(value)

    def end(self, tag: str) -> None:
        self._in_style -= tag.rsplit(" ", 1)[-1] == "style"

    def text(self, data: str) -> None:
        if self._in_style:
            _check_css(data)

    def instruction(self, target: str, data: str) -> None:
        if target.lower() == "xml-stylesheet":
            raise DecodeError(f"unsafe SVG: it links a style sheet outside the file ({data[:120]!r})")


def _check_reference(value: str) -> None:
    reference = value.strip()
    if reference.startswith("#"):
        return
    if reference.lower().startswith("data:"):
        if reference[5:].lstrip().lower().startswith("image/svg"):
            raise DecodeError("unsafe SVG: it embeds another SVG document (not rendered)")
        return
    raise DecodeError(
        f"unsafe SVG: it refers to {reference[:120]!r} outside the file "
        "(SVGs are rendered only from their own content; external links and files are never fetched)"
    )


def _check_css(value: str) -> None:
    if _CSS_IMPORT.search(value):
        raise DecodeError("unsafe SVG: its style sheet imports another file (@import)")
    for match in _CSS_URL.finditer(value):
        _check_reference(match.group(2))


def _svg_size(root: dict[str, str]) -> tuple[float, float]:
    view_box = [float(v) for v in re.split(r"[\s,]+", root.get("viewBox", "").strip()) if v][:4]
    box = (view_box[2], view_box[3]) if len(view_box) == 4 and view_box[2] > 0 and view_box[3] > 0 else None
    width, height = _svg_length(root.get("width")), _svg_length(root.get("height"))
    if width and height:
        return width, height
    if box and width:
        return width, width * box[1] / box[0]
    if box and height:
        return height * box[0] / box[1], height
    return box or (100.0, 100.0)  # resvg's default size


def _svg_length(raw: str | None) -> float | None:
    match = _SVG_LENGTH.match(raw or "")
    if not match or match.group(2) not in _SVG_UNITS_PX:
        return None  # "100%", "auto", em: use the viewBox
    value = float(match.group(1)) * _SVG_UNITS_PX[match.group(2)]
    return value if value > 0 else None


def _open_svg(path: Path, max_side: int | None) -> OpenedImage:
    import resvg_py

    data = _read_svg(path)
    width, height = check_svg_is_self_contained(data)
    out_w, out_h = _fit(width, height, max_side)
    try:
        png = resvg_py.svg_to_bytes(
            svg_string=data.decode("utf-8", errors="replace"), width=out_w, height=out_h, background="#ffffff"
        )
        with Image.open(io.BytesIO(bytes(png))) as rendered:
            rgb = to_rgb(rendered)
    except (ValueError, OSError) as error:
        raise DecodeError(f"cannot render SVG: {error}") from None
    return OpenedImage(
        image=rgb, width=round(width), height=round(height), format="SVG", mime="image/svg+xml"
    )


def _fit(width: float, height: float, max_side: int | None) -> tuple[int, int]:
    """A vector's rendered size: longest side ``max_side`` (bounded), aspect kept, at least 1 pixel."""
    side = min(max_side or VECTOR_RENDER_SIDE, MAX_VECTOR_RENDER_SIDE)
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- PDF ------------------------------------------------------------------------------------------------
def _open_pdf(path: Path, max_side: int | None) -> OpenedImage:
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as error:
            if "password" in str(error).lower():
                raise DecodeError("PDF is password-protected (encrypted): cannot render it") from None
            if _pdf_page_tree_is_empty(path):  # pdfium refuses to load a document without pages
                raise DecodeError("PDF has no pages") from None
            raise DecodeError(f"corrupt or truncated PDF: {error}") from None
        try:
            if len(document) == 0:
                raise DecodeError("PDF has no pages")
            page = document[0]
            width, height = page.get_size()  # points (1/72 inch)
            if not (width > 0 and height > 0):
                raise DecodeError(f"PDF's first page has no area ({width}x{height} points)")
            out_w, _ = _fit(width, height, max_side)
            bitmap = page.render(scale=out_w / width, fill_color=(255, 255, 255, 255), draw_annots=True)
            rgb = to_rgb(bitmap.to_pil())
        except pdfium.PdfiumError as error:
            raise DecodeError(f"corrupt PDF: {error}") from None
        finally:
            document.close()
    return OpenedImage(
        image=rgb, width=round(width), height=round(height), format="PDF", mime="application/pdf"
    )


def _pdf_page_tree_is_empty(path: Path) -> bool:
    """Whether a PDF pdfium would not load declares an empty page tree (``/Type /Pages ... /Count 0``, no page)."""
    with path.open("rb") as handle:
        data = handle.read(1 << 20)
    return bool(re.search(rb"/Count\s+0\b", data)) and not re.search(rb"/Type\s*/Page(?![a-zA-Z])", data)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(16)
    except OSError:
        return b""


# --- what a file claims to be (for the reasons given when it cannot be opened) ---------------------------
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF8", "GIF"),
    (8, b"WEBP", "WebP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"avif", "AVIF"),
    (8, b"avis", "AVIF"),
    (8, b"heic", "HEIC"),
    (8, b"heix", "HEIC"),
    (8, b"mif1", "HEIF"),
    (8, b"msf1", "HEIF"),
)


def _claimed_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce, if any."""
    return next((name for offset, magic, name in _SIGNATURES if head[offset:].startswith(magic)), None)


__all__ = [
    "MAX_SVG_BYTES",
    "MAX_VECTOR_RENDER_SIDE",
    "VECTOR_RENDER_SIDE",
    "DecodeError",
    "OpenedImage",
    "check_svg_is_self_contained",
    "open_rgb",
    "to_rgb",
]
