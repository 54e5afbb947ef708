"""Digits drawn with pens of any width: the test set for ``mnistseg predict`` on real drawings.

No training saw these. Each digit 0-9 is drawn (a) as hand-like strokes: a fixed path per
digit, slanted, stretched and wobbled at random, traced with a round pen whose width is a
share of the digit's height (2% to 15%), and (b) as a glyph of a TrueType font, when one is
installed. Both come dark on light and light on dark. ``benchmarks/pen_widths.py`` reads
them all; ``tests/test_predict.py`` reads a sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PEN_SHARES = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15)  # pen width / digit height
FONT_FOLDERS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"))
FONT_NAMES = ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Regular.ttf",
              "LiberationMono-Regular.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf")  # fmt: skip


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 24) -> list:
    """Points on an ellipse from angle ``start`` to ``end`` (degrees, 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, steps)]  # fmt: skip


# Each digit as strokes of points in a unit box: x right, y down, as people write them.
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(0.5, 0.5, 0.36, 0.49, -90, 270, 40)],
    1: [[(0.42, 0.12), (0.58, 0.0), (0.52, 0.5), (0.48, 1.0)]],
    2: [_arc(0.5, 0.28, 0.36, 0.28, 190, 390, 20) + [(0.55, 0.62), (0.12, 1.0), (0.9, 0.98)]],
    3: [_arc(0.48, 0.25, 0.34, 0.25, 200, 450, 20), _arc(0.48, 0.74, 0.38, 0.26, -90, 160, 20)],
    4: [[(0.25, 0.0), (0.1, 0.62), (0.92, 0.62)], [(0.7, 0.05), (0.68, 1.0)]],
    5: [[(0.85, 0.02), (0.22, 0.02), (0.16, 0.45)] + _arc(0.48, 0.7, 0.38, 0.29, -130, 150, 20)],
    6: [[(0.72, 0.0), (0.42, 0.22), (0.2, 0.55)] + _arc(0.5, 0.74, 0.32, 0.26, 180, 540, 30)],
    7: [[(0.1, 0.04), (0.9, 0.04), (0.38, 1.0)]],
    8: [_arc(0.5, 0.25, 0.28, 0.24, 90, 450, 30), _arc(0.5, 0.73, 0.34, 0.27, -90, 270, 30)],
    9: [_arc(0.48, 0.3, 0.32, 0.28, 0, 360, 30), [(0.8, 0.3), (0.74, 1.0)]],
}


@dataclass(frozen=True)
class DrawnDigit:
    """One generated picture: its digit, how it was drawn, and the image (8-bit grayscale)."""

    digit: int
    style: str  # "strokes" or a font file name
    pen_share: float | None  # pen width / digit height (strokes only)
    dark_on_light: bool
    image: Image.Image


def draw_strokes(digit: int, height: int, pen: float, rng: np.random.Generator) -> Image.Image:
    """One digit as strokes, white on black, ``height`` pixels tall, with a pen ``pen`` pixels wide."""
    slant = rng.uniform(-0.25, 0.1)  # x shift per unit of height: handwriting leans right
    stretch = rng.uniform(0.75, 1.1)
    width = 0.62 * height * stretch
    margin = int(pen + 0.15 * height)
    size = (int(width + 2 * margin + abs(slant) * height), int(height + 2 * margin))
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in STROKES[digit]:
        wobble = rng.normal(0, 0.015, (len(stroke), 2))
        points = [
            (margin + max(slant, 0) * height + (x + dx) * width - slant * (y + dy) * height + slant * height,
             margin + (y + dy) * height)
            for (x, y), (dx, dy) in zip(stroke, wobble, strict=True)
        ]  # fmt: skip
        draw.line(points, fill=255, width=max(1, round(pen)), joint="curve")
        for x, y in (points[0], points[-1]):  # round caps
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    return canvas


def find_fonts() -> list[Path]:
    """The TrueType fonts of :data:`FONT_NAMES` installed here (Debian's fonts-liberation, fonts-dejavu)."""
    found = {}
    for folder in FONT_FOLDERS:
        if folder.is_dir():
            for path in folder.rglob("*.ttf"):
                if path.name in FONT_NAMES:
                    found.setdefault(path.name, path)
    return [found[name] for name in FONT_NAMES if name in found]


def draw_glyph(digit: int, font_path: Path, height: int) -> Image.Image:
    """One digit in a font, white on black, its ink about ``height`` pixels tall."""
    font = ImageFont.truetype(str(font_path), size=int(height * 1.4))
    left, top, right, bottom = font.getbbox(str(digit))
    margin = int(0.2 * height)
    canvas = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), 0)
    ImageDraw.Draw(canvas).text((margin - left, margin - top), str(digit), fill=255, font=font)
    return canvas


def drawn_digits(seeds: int = 2, height: int = 200) -> Iterator[DrawnDigit]:
    """The whole set: every digit, pen share and polarity, ``seeds`` random drawings each; then the fonts."""
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        for pen_share in PEN_SHARES:
            for digit in range(10):
                light = draw_strokes(digit, height, pen_share * height, rng)
                for dark_on_light in (True, False):
                    image = Image.eval(light, lambda v: 255 - v) if dark_on_light else light
                    yield DrawnDigit(digit, "strokes", pen_share, dark_on_light, image)
    for font_path in find_fonts():
        for digit in range(10):
            light = draw_glyph(digit, font_path, height)
            for dark_on_light in (True, False):
                image = Image.eval(light, lambda v: 255 - v) if dark_on_light else light
                yield DrawnDigit(digit, font_path.name, None, dark_on_light, image)


def digits_in_a_row(digits: list[int], height: int, pen: float, seed: int = 0) -> Image.Image:
    """Several stroke digits side by side on one white page, dark ink (a drawing like a user's)."""
    rng = np.random.default_rng(seed)
    pieces = [draw_strokes(digit, height, pen, rng) for digit in digits]
    page = Image.new("L", (sum(piece.width for piece in pieces) + height, max(p.height for p in pieces) + height), 0)
    x = height // 2
    for piece in pieces:
        page.paste(piece, (x, height // 2))
        x += piece.width
    return Image.eval(page, lambda v: 255 - v)
