"""Base images for the analogy and sequence generators, described by small JSON-able specs.

A spec is a dict that renders to the same pixels at any size, so a puzzle's metadata can carry the
spec of its query image and anyone can re-render it. Kinds:

- ``shapes``: one to three bold shapes on a fill (flat colour, gradient or texture);
- ``texture``: a full-frame fill (stripes, checker, dots, gradient);
- ``glyph``: one character in one of the DejaVu fonts that ship with matplotlib;
- ``photo``: a square crop of a public-domain photo from ``static/photos``.

Everything is drawn with a ``numpy.random.Generator`` passed in by the caller; nothing here touches a
global random state. Fonts and photos are loaded once and cached.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from puzzles.draw import polygon_vertices
from puzzles.images import to_rgb_array

Colour = tuple[int, int, int]
Spec = dict[str, Any]

PHOTO_DIR = Path(__file__).resolve().parent.parent / "static" / "photos"

# Strong, well separated colours: objects stay readable after 64 px and a coarse tokenizer.
STRONG_COLOURS: tuple[Colour, ...] = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (255, 215, 0),  # yellow
    (0, 110, 220),  # blue
    (245, 130, 48),  # orange
    (145, 30, 180),  # purple
    (40, 220, 230),  # cyan
    (240, 50, 230),  # magenta
    (30, 30, 30),  # near black
    (150, 90, 30),  # brown
)
BACKGROUND_COLOURS: tuple[Colour, ...] = (
    (255, 255, 255),
    (235, 235, 235),
    (250, 240, 210),
    (210, 230, 250),
    (20, 20, 40),
)

SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross", "arrow")
# Shapes that look different after any rotation that is not a full turn (used by rotation sequences).
REGULAR_SIDES = {"square": 4, "pentagon": 5, "hexagon": 6}
ASYMMETRIC_SHAPES = ("arrow", "triangle")
STYLES = ("filled", "outline", "striped")
FILL_PATTERNS = ("flat", "gradient", "stripes", "checker", "dots")
GLYPH_CHARS = "AaBbEeFfGgKkMmQqRrSsWwYy23&?"
FONTS = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
)
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "retina", "hubble_deep_field", "brick")
BASE_KINDS = ("shapes", "texture", "glyph", "photo")


# --- resources, loaded once -------------------------------------------------------------------------------


@cache
def font_path(name: str) -> Path:
    """Path of a DejaVu font inside matplotlib's data folder."""
    if name not in FONTS:
        raise ValueError(f"unknown font {name!r}; choose from {', '.join(FONTS)}")
    import matplotlib  # imported lazily: only glyph scenes need it

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"font file {path} is missing from the matplotlib installation")
    return path


@lru_cache(maxsize=256)
def _font(name: str, pixels: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), pixels)


@cache
def load_photo(name: str) -> np.ndarray:
    """A shipped photo as a read-only uint8 RGB array."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTOS)}")
    path = PHOTO_DIR / f"{name}.png"
    if not path.is_file():
        raise FileNotFoundError(f"photo {path} is missing")
    array = to_rgb_array(path)
    array.setflags(write=False)
    return array


# --- drawing primitives -----------------------------------------------------------------------------------


def shape_points(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixel coordinates) of a named shape; angle in degrees, counterclockwise."""
    if shape in REGULAR_SIDES:  # shared geometry with the matrix family's drawing primitives
        return polygon_vertices(REGULAR_SIDES[shape], (cx, cy), radius, rotation=-angle)
    if shape == "triangle":  # isosceles, pointing up: its rotation is visible
        unit = [(0.0, -1.0), (-0.75, 0.8), (0.75, 0.8)]
    elif shape == "diamond":
        unit = [(0.0, -1.0), (-0.7, 0.0), (0.0, 1.0), (0.7, 0.0)]
    elif shape == "star":
        unit = []
        for i in range(10):
            reach = 1.0 if i % 2 == 0 else 0.45
            unit.append((reach * math.sin(math.pi * i / 5), -reach * math.cos(math.pi * i / 5)))
    elif shape == "cross":
        a, b = 0.3, 0.9
        unit = [
            (-a, -b),
            (a, -b),
            (a, -a),
            (b, -a),
            (b, a),
            (a, a),
            (a, b),
            (-a, b),
            (-a, a),
            (-b, a),
            (-b, -a),
            (-a, -a),
        ]
    elif shape == "arrow":  # points up, with a wide head: direction is obvious at small sizes
        unit = [(0.0, -1.0), (0.8, -0.1), (0.3, -0.1), (0.3, 0.9), (-0.3, 0.9), (-0.3, -0.1), (-0.8, -0.1)]
    else:
        raise ValueError(f"shape {shape!r} has no polygon; choose from {', '.join(SHAPES)}")
    cos_a, sin_a = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Image y grows downwards, so a counterclockwise turn on screen uses -angle in these coordinates.
    return [(cx + radius * (x * cos_a + y * sin_a), cy + radius * (-x * sin_a + y * cos_a)) for x, y in unit]


def shape_mask(obj: Spec, size: int) -> np.ndarray:
    """Boolean (size, size) mask of one object {shape, cx, cy, r, angle} with unit coordinates."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, radius = obj["cx"] * size, obj["cy"] * size, obj["r"] * size
    if obj["shape"] == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    else:
        draw.polygon(shape_points(obj["shape"], cx, cy, radius, obj.get("angle", 0.0)), fill=255)
    return np.asarray(canvas) > 0


def outline_of(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of the mask that lie within `width` pixels of its border (a thick inner outline)."""
    interior = mask.copy()
    for _ in range(width):
        shrunk = interior.copy()
        shrunk[1:, :] &= interior[:-1, :]
        shrunk[:-1, :] &= interior[1:, :]
        shrunk[:, 1:] &= interior[:, :-1]
        shrunk[:, :-1] &= interior[:, 1:]
        interior = shrunk
    return mask & ~interior


def dilate(mask: np.ndarray, width: int) -> np.ndarray:
    """Grow a mask by `width` pixels (4-neighbourhood steps)."""
    grown = mask.copy()
    for _ in range(width):
        step = grown.copy()
        step[1:, :] |= grown[:-1, :]
        step[:-1, :] |= grown[1:, :]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def line_width(size: int) -> int:
    """Stroke width that stays visible after downscaling to 64 px and tokenizing."""
    return max(2, round(size / 20))


def paint_object(canvas: np.ndarray, mask: np.ndarray, colour: Colour, style: str) -> None:
    """Paint a masked object onto an RGB canvas in place, in one of STYLES."""
    size = canvas.shape[0]
    if style == "filled":
        canvas[mask] = colour
    elif style == "outline":
        canvas[outline_of(mask, line_width(size))] = colour
    elif style == "striped":
        period = max(4, size // 8)
        rows = np.arange(size)[:, None] + np.arange(size)[None, :]
        stripes = (rows % period) < period // 2
        canvas[mask & stripes] = colour
        canvas[mask & ~stripes] = (255, 255, 255)
        canvas[outline_of(mask, 1)] = colour
    else:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")


def render_fill(fill: Spec, size: int) -> np.ndarray:
    """A full-frame fill: {pattern, colours, period (fraction of the side), direction}."""
    pattern, colours = fill["pattern"], [np.array(c, dtype=np.float32) for c in fill["colours"]]
    if pattern == "flat":
        return np.broadcast_to(colours[0].astype(np.uint8), (size, size, 3)).copy()
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    direction = fill.get("direction", "horizontal")
    along = {"horizontal": xs, "vertical": ys, "diagonal": (xs + ys) / 2}.get(direction)
    if along is None:
        raise ValueError(f"unknown fill direction {direction!r}")
    if pattern == "gradient":
        t = along[..., None]
        return (colours[0] * (1 - t) + colours[1] * t + 0.5).astype(np.uint8)
    period = fill.get("period", 0.25)
    if pattern == "stripes":
        first = (along / period * 2).astype(int) % 2 == 0
    elif pattern == "checker":
        first = ((xs / period).astype(int) + (ys / period).astype(int)) % 2 == 0
    elif pattern == "dots":
        dx, dy = (xs % period) / period - 0.5, (ys % period) / period - 0.5
        first = dx * dx + dy * dy > 0.09
    else:
        raise ValueError(f"unknown fill pattern {pattern!r}; choose from {', '.join(FILL_PATTERNS)}")
    return np.where(first[..., None], colours[0], colours[1]).astype(np.uint8)


# --- rendering specs --------------------------------------------------------------------------------------


def object_masks(spec: Spec, size: int) -> list[np.ndarray]:
    """One boolean mask per foreground object (shapes: each shape; glyph: the glyph; others: none)."""
    if spec["kind"] == "shapes":
        return [shape_mask(obj, size) for obj in spec["objects"]]
    if spec["kind"] == "glyph":
        return [glyph_mask(spec["char"], spec["font"], size)]
    return []


def foreground_mask(spec: Spec, size: int) -> np.ndarray:
    masks = object_masks(spec, size)
    if not masks:
        raise ValueError(f"a {spec['kind']!r} scene has no foreground objects")
    return np.logical_or.reduce(masks)


def glyph_mask(char: str, font: str, size: int) -> np.ndarray:
    """A character centred in the frame, filling about 70% of its height."""
    face = _font(font, max(8, round(size * 0.72)))
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=face)
    origin = ((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top)
    draw.text(origin, char, fill=255, font=face)
    return np.asarray(canvas) > 127


def render(spec: Spec, size: int, style: str | None = None) -> np.ndarray:
    """Render a spec to a uint8 RGB (size, size, 3) array; `style` overrides the shapes' style."""
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    kind = spec.get("kind")
    if kind == "shapes":
        canvas = render_fill(spec["background"], size)
        for obj, mask in zip(spec["objects"], object_masks(spec, size), strict=True):
            paint_object(canvas, mask, tuple(obj["colour"]), style or spec.get("style", "filled"))
        return canvas
    if kind == "texture":
        return render_fill(spec["fill"], size)
    if kind == "glyph":
        canvas = render_fill({"pattern": "flat", "colours": [spec["background"]]}, size)
        paint_object(canvas, glyph_mask(spec["char"], spec["font"], size), tuple(spec["colour"]), style or "filled")
        return canvas
    if kind == "photo":
        return render_photo(spec, size)
    raise ValueError(f"unknown scene kind {kind!r}; choose from {', '.join(BASE_KINDS)}")


def render_photo(spec: Spec, size: int) -> np.ndarray:
    """A square crop {name, crop: [top, left, side] as fractions of the photo's shorter side}."""
    photo = load_photo(spec["name"])
    short = min(photo.shape[:2])
    side = max(1, min(round(spec["crop"][2] * short), short))
    top = min(round(spec["crop"][0] * short), photo.shape[0] - side)  # clamped: rounding must not shrink the crop
    left = min(round(spec["crop"][1] * short), photo.shape[1] - side)
    crop = photo[top : top + side, left : left + side]
    resample = Image.Resampling.BOX if side >= size else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(crop).resize((size, size), resample))


# --- drawing random specs ---------------------------------------------------------------------------------


def pick(rng: np.random.Generator, options: tuple | list) -> Any:
    return options[int(rng.integers(len(options)))]


def luma(colour: tuple | list) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def pick_colours(rng: np.random.Generator, count: int, avoid: tuple = ()) -> list[list[int]]:
    """`count` distinct strong colours that contrast with every colour in `avoid` (e.g. the background)."""
    allowed = [
        c
        for c in STRONG_COLOURS
        if all(abs(luma(c) - luma(a)) > 40 or max(abs(x - y) for x, y in zip(c, a, strict=False)) > 120 for a in avoid)
    ]
    order = rng.permutation(len(allowed))[:count]
    return [list(allowed[i]) for i in order]


def random_fill(rng: np.random.Generator, plain_only: bool = False) -> Spec:
    """A background: mostly flat and pale so the objects stand out."""
    if plain_only or rng.random() < 0.7:
        return {"pattern": "flat", "colours": [list(pick(rng, BACKGROUND_COLOURS))]}
    light = [list(c) for c in BACKGROUND_COLOURS[:4]]
    first, second = rng.permutation(len(light))[:2]
    return {
        "pattern": "gradient",
        "colours": [light[first], light[second]],
        "direction": pick(rng, ("horizontal", "vertical")),
    }


def random_object(
    rng: np.random.Generator, colour: list[int], shapes: tuple = SHAPES, radius: float | None = None
) -> Spec:
    r = radius if radius is not None else float(rng.uniform(0.14, 0.24))
    return {
        "shape": pick(rng, shapes),
        "cx": float(rng.uniform(r, 1 - r)),
        "cy": float(rng.uniform(r, 1 - r)),
        "r": r,
        "angle": float(pick(rng, (0, 0, 0, 15, 30, 45))),
        "colour": colour,
    }


def random_shapes(rng: np.random.Generator, count: int | None = None, plain_background: bool = False) -> Spec:
    """One to three shapes of different colours that do not overlap much (objects stay countable)."""
    count = count if count is not None else int(rng.integers(1, 4))
    background = random_fill(rng, plain_only=plain_background)
    colours = pick_colours(rng, count, avoid=tuple(tuple(c) for c in background["colours"]))
    objects: list[Spec] = []
    for colour in colours:
        for _ in range(20):  # rejection sampling; crowded draws keep the last try
            candidate = random_object(rng, colour, radius=float(rng.uniform(0.12, 0.3 if count == 1 else 0.2)))
            if all(
                math.hypot(candidate["cx"] - o["cx"], candidate["cy"] - o["cy"]) > candidate["r"] + o["r"]
                for o in objects
            ):
                break
        objects.append(candidate)
    return {"kind": "shapes", "background": background, "objects": objects, "style": "filled"}


def random_texture(rng: np.random.Generator) -> Spec:
    pattern = pick(rng, FILL_PATTERNS[1:])
    colours = (
        pick_colours(rng, 2)
        if rng.random() < 0.6
        else [list(pick(rng, BACKGROUND_COLOURS[:4])), pick_colours(rng, 1)[0]]
    )
    fill = {"pattern": pattern, "colours": colours, "direction": pick(rng, ("horizontal", "vertical", "diagonal"))}
    if pattern != "gradient":
        fill["period"] = float(pick(rng, (0.25, 1 / 3, 0.5)))
    return {"kind": "texture", "fill": fill}


def random_glyph(rng: np.random.Generator, font: str | None = None) -> Spec:
    background = list(pick(rng, BACKGROUND_COLOURS))
    return {
        "kind": "glyph",
        "char": pick(rng, GLYPH_CHARS),
        "font": font or pick(rng, FONTS),
        "colour": pick_colours(rng, 1, avoid=(tuple(background),))[0],
        "background": background,
    }


def random_photo(rng: np.random.Generator) -> Spec:
    """A square crop covering 60-100% of the photo's shorter side, so the subject stays recognisable."""
    name = pick(rng, PHOTOS)
    height, width = load_photo(name).shape[:2]
    short = min(height, width)
    side = float(rng.uniform(0.6, 1.0))
    top = float(rng.uniform(0, (height / short) - side))
    left = float(rng.uniform(0, (width / short) - side))
    return {"kind": "photo", "name": name, "crop": [top, left, side]}


def random_base(rng: np.random.Generator, kinds: tuple[str, ...] = BASE_KINDS) -> Spec:
    """A random spec of one of `kinds` (weights favour shapes, the easiest to read at 64 px)."""
    unknown = [k for k in kinds if k not in BASE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown scene kinds {unknown or kinds!r}; choose from {', '.join(BASE_KINDS)}")
    weights = np.array([{"shapes": 5.0, "texture": 1.5, "glyph": 1.5, "photo": 2.0}[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    maker = {"shapes": random_shapes, "texture": random_texture, "glyph": random_glyph, "photo": random_photo}[kind]
    return maker(rng)
