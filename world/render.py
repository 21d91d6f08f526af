"""Drawing a :class:`~world.scene.Scene` with PIL.

Scenes are drawn ``SUPERSAMPLE`` times larger and reduced with a box filter, which gives smooth edges at
64 px. Every length is a fraction of the image side, so a scene looks the same at any size.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from world.scene import Scene, WorldObject
from world.vocab import BACKGROUND_RGB, COLOUR_RGB, SIZE_FRACTION, cell_of

SUPERSAMPLE = 4
MARGIN = 0.06  # room around the 3x3 grid (the frame lives there), fraction of the side
PATTERN_PERIOD = 0.06  # stripes, dots and checks repeat every this fraction of the side
DARK_FACTOR = 0.55  # brightness of a "dark" picture
RGB = tuple[int, int, int]


def _mix(colour: RGB, other: RGB, amount: float) -> RGB:
    return tuple(round(c + (o - c) * amount) for c, o in zip(colour, other, strict=True))  # type: ignore[return-value]


def _luminance(colour: RGB) -> float:
    r, g, b = colour
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def pattern_ink(colour: RGB) -> RGB:
    """The second colour of a patterned object: a lighter tint of dark colours, a darker shade of light ones."""
    if _luminance(colour) < 0.35:
        return _mix(colour, (255, 255, 255), 0.5)
    return _mix(colour, (0, 0, 0), 0.45)


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size`` pixels."""
    if size < 16:
        raise ValueError(f"image size {size} is too small (minimum 16 px)")
    side = size * SUPERSAMPLE
    canvas = _backdrop(scene, side)
    margin = MARGIN * side
    cell = (side - 2 * margin) / 3
    period = max(4, round(PATTERN_PERIOD * side))
    for obj in scene.objects:
        _draw_object(canvas, obj, margin, cell, period)
    if scene.frame:
        _draw_frame(canvas, scene, side)
    if scene.lighting == "dark":
        canvas = canvas.point(_dark_lut())
    return canvas.resize((size, size), Image.Resampling.BOX)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes without metadata (identical for identical pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _dark_lut() -> list[int]:
    return [round(v * DARK_FACTOR) for v in range(256)] * 3


def _backdrop(scene: Scene, side: int) -> Image.Image:
    base = BACKGROUND_RGB[scene.background]
    if scene.backdrop == "gradient":
        top = np.array(_mix(base, (0, 0, 0), 0.22), dtype=np.float32)
        bottom = np.array(_mix(base, (255, 255, 255), 0.4), dtype=np.float32)
        t = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None]
        rows = (top * (1 - t) + bottom * t).round().astype(np.uint8)  # (side, 3)
        return Image.fromarray(np.repeat(rows[:, None, :], side, axis=1), "RGB")
    canvas = Image.new("RGB", (side, side), base)
    if scene.backdrop == "tiled":
        draw = ImageDraw.Draw(canvas)
        line = _mix(base, (0, 0, 0), 0.35) if _luminance(base) > 0.3 else _mix(base, (255, 255, 255), 0.3)
        step = side / 6
        width = max(1, round(side * 0.015))
        for k in range(1, 6):
            at = round(k * step)
            draw.line([(at, 0), (at, side)], fill=line, width=width)
            draw.line([(0, at), (side, at)], fill=line, width=width)
    return canvas


def _draw_frame(canvas: Image.Image, scene: Scene, side: int) -> None:
    base = BACKGROUND_RGB[scene.background]
    colour = (60, 45, 35) if _luminance(base) > 0.45 else (215, 205, 190)
    width = max(2, round(MARGIN * side * 0.75))
    ImageDraw.Draw(canvas).rectangle([0, 0, side - 1, side - 1], outline=colour, width=width)


def _draw_object(canvas: Image.Image, obj: WorldObject, margin: float, cell: float, period: int) -> None:
    row, col = cell_of(obj.position)
    diameter = SIZE_FRACTION[obj.size] * cell
    room = (cell - diameter) / 2 * 0.9
    cx = margin + (col + 0.5) * cell + obj.dx * room
    cy = margin + (row + 0.5) * cell + obj.dy * room
    box = max(4, round(diameter))
    x0, y0 = round(cx - box / 2), round(cy - box / 2)
    mask = shape_mask(obj.shape, box)
    fill = _pattern_fill(COLOUR_RGB[obj.colour], obj.pattern, box, period)
    canvas.paste(fill, (x0, y0), mask)


def _pattern_fill(colour: RGB, pattern: str, box: int, period: int) -> Image.Image:
    if pattern == "plain":
        return Image.new("RGB", (box, box), colour)
    ys, xs = np.mgrid[0:box, 0:box]
    half = period / 2
    if pattern == "striped":
        ink = ((xs + ys) // half).astype(int) % 2 == 1
    elif pattern == "checkered":
        ink = ((xs // half).astype(int) + (ys // half).astype(int)) % 2 == 1
    elif pattern == "dotted":
        u = (xs % period) - half + 0.5
        v = (ys % period) - half + 0.5
        ink = u * u + v * v <= (period * 0.28) ** 2
    else:  # pragma: no cover - guarded by the Scene model
        raise ValueError(f"unknown pattern {pattern!r}")
    pixels = np.empty((box, box, 3), dtype=np.uint8)
    pixels[...] = colour
    pixels[ink] = pattern_ink(colour)
    return Image.fromarray(pixels, "RGB")


@lru_cache(maxsize=256)
def shape_mask(shape: str, box: int) -> Image.Image:
    """An 8-bit mask (255 inside) of ``shape`` filling a ``box`` x ``box`` square."""
    mask = Image.new("L", (box, box), 0)
    draw = ImageDraw.Draw(mask)
    b = box - 1
    if shape == "circle":
        draw.ellipse([0, 0, b, b], fill=255)
    elif shape == "ring":
        draw.ellipse([0, 0, b, b], fill=255)
        inset = box * 0.27
        draw.ellipse([inset, inset, b - inset, b - inset], fill=0)
    elif shape == "square":
        inset = box * 0.08
        draw.rectangle([inset, inset, b - inset, b - inset], fill=255)
    elif shape == "diamond":
        draw.polygon([(b / 2, 0), (b, b / 2), (b / 2, b), (0, b / 2)], fill=255)
    elif shape == "triangle":
        draw.polygon([(b / 2, 0), (b, b * 0.93), (0, b * 0.93)], fill=255)
    elif shape == "cross":
        arm = box * 0.17
        mid = b / 2
        draw.rectangle([mid - arm, 0, mid + arm, b], fill=255)
        draw.rectangle([0, mid - arm, b, mid + arm], fill=255)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = b / 2 if k % 2 == 0 else b / 2 * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((b / 2 + radius * math.cos(angle), b / 2 + 0.05 * b + radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    elif shape == "heart":
        points = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((b / 2 + x / 34 * b, b * 0.45 - y / 34 * b))
        draw.polygon(points, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return mask
