"""Shape drawing primitives shared by the generators.

A picture is a list of `Shape` specs rendered onto a white canvas by `render`, which returns a uint8 RGB
array (H, W, 3). Shapes are drawn on a canvas `supersample` times larger and reduced with a box filter,
which anti-aliases edges the same way at every output size.

Coordinates are fractions of the canvas: `center=(0.5, 0.5)` is the middle, `radius` and `line_width`
are fractions of the canvas's shorter side, so one spec renders alike at 32, 64 or 160 pixels.

    >>> from puzzles.draw import Shape, render
    >>> image = render([Shape("hexagon", (0.5, 0.5), 0.3, fill=128)], 64)
    >>> image.shape
    (64, 64, 3)
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPE_KINDS = ("triangle", "square", "pentagon", "hexagon", "circle")
POLYGON_SIDES = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}

Colour = int | tuple[int, int, int]  # a grey level 0 (black) .. 255 (white), or an RGB triple


@dataclass(frozen=True)
class Shape:
    """One shape to draw; every length is a fraction of the canvas so the spec is size-independent."""

    kind: str  # one of SHAPE_KINDS
    center: tuple[float, float]  # (x, y), fractions of canvas width and height
    radius: float  # circumradius, fraction of the canvas's shorter side
    rotation: float = 0.0  # degrees, clockwise; 0 = triangle/pentagon apex up, square/hexagon flat top
    fill: Colour | None = 0  # interior colour; None leaves the inside transparent (outline only)
    outline: Colour = 0  # outline colour
    line_width: float = 0.03  # outline width (drawn inside the shape), fraction of the shorter side; 0 = none

    def __post_init__(self) -> None:
        if self.kind not in SHAPE_KINDS:
            raise ValueError(f"unknown shape kind {self.kind!r}; expected one of {', '.join(SHAPE_KINDS)}")
        if not self.radius > 0:
            raise ValueError(f"shape radius must be positive, got {self.radius}")
        if self.line_width < 0:
            raise ValueError(f"line_width must be >= 0, got {self.line_width}")
        if self.fill is None and self.line_width == 0:
            raise ValueError("a shape with fill=None and line_width=0 would be invisible")
        for name, colour in (("fill", self.fill), ("outline", self.outline)):
            if colour is not None:
                _check_colour(name, colour)


def _check_colour(name: str, colour: Colour) -> None:
    values = (colour,) if isinstance(colour, int) else tuple(colour)
    if len(values) not in (1, 3) or any(not isinstance(v, int) or not 0 <= v <= 255 for v in values):
        raise ValueError(f"{name} must be a grey level 0..255 or an RGB triple of 0..255, got {colour!r}")


def _rgb(colour: Colour) -> tuple[int, int, int]:
    return (colour, colour, colour) if isinstance(colour, int) else tuple(colour)  # type: ignore[return-value]


def polygon_vertices(
    sides: int, center: tuple[float, float], radius: float, rotation: float = 0.0
) -> list[tuple[float, float]]:
    """Vertices of a regular polygon in canvas units (y grows downwards).

    Odd polygons start with a vertex straight up; even ones are turned half a step so an edge is on top.
    """
    if sides < 3:
        raise ValueError(f"a polygon needs at least 3 sides, got {sides}")
    start = -90.0 + (180.0 / sides if sides % 2 == 0 else 0.0) + rotation
    cx, cy = center
    angles = [math.radians(start + 360.0 * k / sides) for k in range(sides)]
    return [(cx + radius * math.cos(angle), cy + radius * math.sin(angle)) for angle in angles]


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, width: int, height: int, pixel: int = 1) -> None:
    """Draw one shape onto a PIL canvas of width x height pixels.

    `pixel` is the supersampling factor: outlines are never thinner than one output pixel.
    """
    short = min(width, height)
    center = (shape.center[0] * width, shape.center[1] * height)
    radius = shape.radius * short
    line = 0 if shape.line_width == 0 else max(pixel, round(shape.line_width * short))
    fill = None if shape.fill is None else _rgb(shape.fill)
    outline = _rgb(shape.outline) if line else None
    if shape.kind == "circle":
        box = (center[0] - radius, center[1] - radius, center[0] + radius, center[1] + radius)
        draw.ellipse(box, fill=fill, outline=outline, width=line)
        return
    vertices = polygon_vertices(POLYGON_SIDES[shape.kind], center, radius, shape.rotation)
    if fill is not None:
        draw.polygon(vertices, fill=fill)
    if outline is not None:
        draw.polygon(vertices, outline=outline, width=line)


def _supersample_for(size: int) -> int:
    """Enough supersampling for smooth edges while keeping the work canvas near 256 px."""
    return max(2, min(4, math.ceil(256 / size)))


def render(
    shapes: Iterable[Shape],
    size: int | tuple[int, int],
    background: Colour = 255,
    supersample: int | None = None,
) -> np.ndarray:
    """Render shapes in order (later ones on top) onto a plain canvas -> uint8 RGB array (H, W, 3).

    `size` is a side length or (width, height); `supersample` defaults to 2..4 depending on size.
    """
    width, height = (size, size) if isinstance(size, int) else size
    if width < 1 or height < 1:
        raise ValueError(f"canvas size must be positive, got {size!r}")
    _check_colour("background", background)
    factor = supersample or _supersample_for(min(width, height))
    if factor < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    canvas = Image.new("RGB", (width * factor, height * factor), _rgb(background))
    draw = ImageDraw.Draw(canvas)
    for shape in shapes:
        draw_shape(draw, shape, width * factor, height * factor, pixel=factor)
    if factor > 1:
        canvas = canvas.reduce(factor)
    return np.asarray(canvas, dtype=np.uint8).copy()


MONTAGE_GAP = 4  # white pixels between cells
CELL_BORDER = (190, 190, 190)  # a thin frame, so cells with shapes near their edge do not run together
MISSING_FILL = (225, 225, 225)
MISSING_MARK = (90, 90, 90)


def _missing_cell(cell: int) -> Image.Image:
    """A grey cell with a centred "?", the mark of the answer the puzzle asks for."""
    from PIL import ImageFont

    image = Image.new("RGB", (cell, cell), MISSING_FILL)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, cell // 2))
    draw.text((cell / 2, cell / 2), "?", fill=MISSING_MARK, font=font, anchor="mm")
    return image


def montage(panels: Sequence[np.ndarray], columns: int, cell: int = 64, missing: bool = True) -> np.ndarray:
    """Panels on a grid of framed square cells (white gaps between), a "?" cell at the end when `missing`."""
    from puzzles.images import to_square

    count = len(panels) + (1 if missing else 0)
    rows = -(-count // columns)
    step = cell + MONTAGE_GAP
    canvas = Image.new("RGB", (columns * step + MONTAGE_GAP, rows * step + MONTAGE_GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for index in range(count):
        left, top = MONTAGE_GAP + (index % columns) * step, MONTAGE_GAP + (index // columns) * step
        tile = Image.fromarray(to_square(panels[index], cell)) if index < len(panels) else _missing_cell(cell)
        canvas.paste(tile, (left, top))
        draw.rectangle((left, top, left + cell - 1, top + cell - 1), outline=CELL_BORDER, width=1)
    return np.asarray(canvas, dtype=np.uint8).copy()
