"""Analogy puzzles: A : A' :: B : ?, with one to three example pairs.

Panels are ``[A1, A1', (A2, A2', A3, A3',) B]`` and the answer is B under the same transform. The
transform's parameters (shift amount, colour, fonts, ...) are drawn once per puzzle, so the examples
define them. Candidates are the answer, near misses (the same transform with other parameters), B
itself, and B under other transforms, all distinct.

``meta["query"]`` is the scene spec of B (see ``puzzles.scenes``), so ``pair(transform, spec, params,
size)`` recomputes the query panel and the answer exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from puzzles import scenes
from puzzles.puzzle import Puzzle
from puzzles.scenes import Spec

VERSION = "1.0"
log = logging.getLogger(__name__)

MAX_PAIRS = 3
CANDIDATES = 8
HOLE_GREY = (128, 128, 128)
SEED_TASKS = ("colorize", "segment", "inpaint", "edges", "style", "font")


# --- image-level transforms: answer = f(question) --------------------------------------------------------


def _greyscale(image: np.ndarray) -> np.ndarray:
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat((luma + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def _shift(image: np.ndarray, params: dict) -> np.ndarray:
    """Cyclic shift by whole eighths of the side (whole token patches at 64 px and an 8x8 grid)."""
    step = image.shape[0] / 8
    return np.roll(image, (round(params["dy"] * step), round(params["dx"] * step)), axis=(0, 1))


def _zoom(image: np.ndarray, params: dict) -> np.ndarray:
    """Crop the centre 1/factor of the frame and scale it back up."""
    size = image.shape[0]
    side = max(1, round(size / params["factor"]))
    start = (size - side) // 2
    crop = image[start : start + side, start : start + side]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))


def _brightness(image: np.ndarray, params: dict) -> np.ndarray:
    return np.clip(image.astype(np.int16) + params["delta"], 0, 255).astype(np.uint8)


def _posterize(image: np.ndarray, params: dict) -> np.ndarray:
    top = params["levels"] - 1
    return (np.round(image.astype(np.float32) / 255 * top) * (255 / top) + 0.5).astype(np.uint8)


def _hue_rotate(image: np.ndarray, params: dict) -> np.ndarray:
    hsv = np.asarray(Image.fromarray(image).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(params["degrees"] * 256 / 360)) % 256
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def _blur(image: np.ndarray, params: dict) -> np.ndarray:
    radius = params["radius"] * image.shape[0]
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def _edges(image: np.ndarray, params: dict) -> np.ndarray:
    """White edges on black: grey-level jumps to a right or lower neighbour, thickened to stay visible."""
    grey = _greyscale(image)[..., 0].astype(np.int16)
    jump = np.zeros(grey.shape, dtype=bool)
    jump[:, :-1] |= np.abs(np.diff(grey, axis=1)) > params["threshold"]
    jump[:-1, :] |= np.abs(np.diff(grey, axis=0)) > params["threshold"]
    jump = scenes.dilate(jump, max(0, round(image.shape[0] / 64)))
    return np.where(jump[..., None], np.uint8(255), np.uint8(0)).repeat(3, axis=2)


IMAGE_FUNCTIONS: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "hflip": lambda image, params: image[:, ::-1],
    "vflip": lambda image, params: image[::-1],
    "rotate90": lambda image, params: np.rot90(image, 1),
    "rotate180": lambda image, params: np.rot90(image, 2),
    "transpose": lambda image, params: image.transpose(1, 0, 2),
    "shift": _shift,
    "zoom": _zoom,
    "invert": lambda image, params: 255 - image,
    "greyscale": lambda image, params: _greyscale(image),
    "channel_swap": lambda image, params: image[..., list(params["order"])],
    "brightness": _brightness,
    "posterize": _posterize,
    "hue_rotate": _hue_rotate,
    "blur": _blur,
    "edges": _edges,
}


def transform_image(name: str, image: np.ndarray, params: dict) -> np.ndarray:
    """Apply an image-level transform (one of IMAGE_FUNCTIONS) to a uint8 RGB array."""
    if name not in IMAGE_FUNCTIONS:
        raise ValueError(f"{name!r} is not an image-level transform; choose from {', '.join(IMAGE_FUNCTIONS)}")
    return np.ascontiguousarray(IMAGE_FUNCTIONS[name](image, params), dtype=np.uint8)


# --- scene-level transforms: question and answer both come from the spec ----------------------------------


def _segment(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    mask = scenes.foreground_mask(spec, size)
    answer = np.where(
        mask[..., None], np.array(params["foreground"], np.uint8), np.array(params["background"], np.uint8)
    )
    return scenes.render(spec, size), answer


def _recolour(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The largest object takes the puzzle's colour."""
    largest = max(range(len(spec["objects"])), key=lambda i: spec["objects"][i]["r"])
    objects = [dict(obj) for obj in spec["objects"]]
    objects[largest]["colour"] = list(params["colour"])
    return scenes.render(spec, size), scenes.render({**spec, "objects": objects}, size)


def _outline(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ring of the puzzle's colour drawn just outside every object."""
    question = scenes.render(spec, size)
    answer = question.copy()
    for mask in scenes.object_masks(spec, size):
        answer[scenes.dilate(mask, scenes.line_width(size)) & ~mask] = params["colour"]
    return question, answer


def _hole_box(params: dict, size: int) -> tuple[int, int, int]:
    side = max(2, round(params["side"] * size))
    return min(round(params["top"] * size), size - side), min(round(params["left"] * size), size - side), side


def _inpaint(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    answer = scenes.render(spec, size)
    question = answer.copy()
    top, left, side = _hole_box(params, size)
    question[top : top + side, left : left + side] = HOLE_GREY
    return question, answer


def _colorize(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    answer = scenes.render(spec, size)
    return _greyscale(answer), answer


def _style(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    return scenes.render(spec, size, style=params["from"]), scenes.render(spec, size, style=params["to"])


def _font(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    return scenes.render({**spec, "font": params["from"]}, size), scenes.render({**spec, "font": params["to"]}, size)


# --- parameters, drawn once per puzzle --------------------------------------------------------------------


def _no_params(rng: np.random.Generator) -> dict:
    return {}


def _shift_params(rng: np.random.Generator) -> dict:
    while True:
        dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
        if (dx, dy) != (0, 0):
            return {"dx": dx, "dy": dy}


def _two_different(rng: np.random.Generator, options: tuple) -> tuple[Any, Any]:
    first, second = rng.permutation(len(options))[:2]
    return options[int(first)], options[int(second)]


def _segment_params(rng: np.random.Generator) -> dict:
    foreground, background = ([255, 255, 255], [0, 0, 0]) if rng.random() < 0.7 else ([0, 0, 0], [255, 255, 255])
    return {"foreground": foreground, "background": background}


PERMUTATIONS = [list(p) for p in permutations(range(3)) if list(p) != [0, 1, 2]]

PARAMETERS: dict[str, Callable[[np.random.Generator], dict]] = {
    "shift": _shift_params,
    "zoom": lambda rng: {"factor": float(scenes.pick(rng, (1.5, 2.0)))},
    "channel_swap": lambda rng: {"order": list(scenes.pick(rng, PERMUTATIONS))},
    "brightness": lambda rng: {"delta": int(scenes.pick(rng, (-1, 1)) * rng.integers(60, 101))},
    "posterize": lambda rng: {"levels": int(scenes.pick(rng, (2, 3)))},
    "hue_rotate": lambda rng: {"degrees": int(scenes.pick(rng, (60, 90, 120, 180, 240, 270, 300)))},
    "blur": lambda rng: {"radius": float(scenes.pick(rng, (0.03, 0.05, 0.07)))},
    "edges": lambda rng: {"threshold": 24},
    "segment": _segment_params,
    "recolour": lambda rng: {"colour": scenes.pick_colours(rng, 1)[0]},
    "outline": lambda rng: {"colour": scenes.pick_colours(rng, 1)[0]},
    "inpaint": lambda rng: {
        "side": float(scenes.pick(rng, (0.25, 0.375))),
        "top": float(scenes.pick(rng, (0.125, 0.25, 0.375))),
        "left": float(scenes.pick(rng, (0.125, 0.25, 0.375))),
    },
    "style": lambda rng: dict(zip(("from", "to"), _two_different(rng, scenes.STYLES), strict=True)),
    "font": lambda rng: dict(zip(("from", "to"), _two_different(rng, scenes.FONTS), strict=True)),
}


# --- the registry -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    name: str
    group: str  # geometric | photometric | filter | structure | task
    bases: tuple[str, ...]  # scene kinds it applies to
    pair: Callable[[Spec, dict, int], tuple[np.ndarray, np.ndarray]]  # (spec, params, size) -> (question, answer)

    @property
    def image_level(self) -> bool:
        return self.name in IMAGE_FUNCTIONS

    def draw_params(self, rng: np.random.Generator) -> dict:
        return PARAMETERS.get(self.name, _no_params)(rng)


def _image_pair(name: str) -> Callable[[Spec, dict, int], tuple[np.ndarray, np.ndarray]]:
    def pair(spec: Spec, params: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
        question = scenes.render(spec, size)
        return question, transform_image(name, question, params)

    return pair


ALL_BASES = scenes.BASE_KINDS
_GROUPS = {
    "geometric": ("hflip", "vflip", "rotate90", "rotate180", "transpose", "shift", "zoom"),
    "photometric": ("invert", "greyscale", "channel_swap", "brightness", "posterize", "hue_rotate"),
    "filter": ("blur", "edges"),
}
_REGISTRY: list[Transform] = [
    Transform(name, group, ALL_BASES, _image_pair(name)) for group, names in _GROUPS.items() for name in names
]
_REGISTRY += [
    Transform("segment", "structure", ("shapes", "glyph"), _segment),
    Transform("recolour", "structure", ("shapes",), _recolour),
    Transform("inpaint", "structure", ALL_BASES, _inpaint),
    Transform("outline", "structure", ("shapes", "glyph"), _outline),
    Transform("colorize", "task", ("shapes", "texture", "glyph", "photo"), _colorize),
    Transform("style", "task", ("shapes", "glyph"), _style),
    Transform("font", "task", ("glyph",), _font),
]
REGISTRY: dict[str, Transform] = {t.name: t for t in _REGISTRY}
TRANSFORMS: tuple[str, ...] = tuple(REGISTRY)
DIFFICULTY = {"photometric": 1, "filter": 2, "geometric": 2, "structure": 3, "task": 3}


def pair(transform: str, spec: Spec, params: dict, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(question, answer) for a scene spec under a transform: recomputes any puzzle's panels exactly."""
    return _lookup(transform).pair(spec, params, size)


def _lookup(transform: str) -> Transform:
    if transform not in REGISTRY:
        raise ValueError(f"unknown transform {transform!r}; choose from {', '.join(TRANSFORMS)}")
    return REGISTRY[transform]


# --- puzzle assembly --------------------------------------------------------------------------------------


class _Degenerate(Exception):
    """This draw cannot make a fair puzzle (no visible change, too few distinct candidates)."""


def _draw_pair(
    rng: np.random.Generator, transform: Transform, params: dict, kinds: tuple[str, ...], size: int
) -> tuple[Spec, np.ndarray, np.ndarray]:
    """A scene whose transform is visible (question differs from answer)."""
    for _ in range(20):
        spec = _draw_spec(rng, transform, params, kinds)
        question, answer = transform.pair(spec, params, size)
        if not np.array_equal(question, answer):
            return spec, question, answer
    raise _Degenerate(f"no visible change under {transform.name}")


def _draw_spec(rng: np.random.Generator, transform: Transform, params: dict, kinds: tuple[str, ...]) -> Spec:
    if transform.name == "font":
        return scenes.random_glyph(rng, font=params["from"])
    return scenes.random_base(rng, kinds)


def _near_misses(
    rng: np.random.Generator, transform: Transform, spec: Spec, params: dict, question: np.ndarray, size: int
) -> list[np.ndarray]:
    """The same transform with other parameters, where the question stays the same (wrong amount, colour, font)."""
    if transform.name == "colorize":  # right shapes, wrong colours
        answer = transform.pair(spec, params, size)[1]
        return [answer[..., order] for order in PERMUTATIONS[:2]]
    if transform.name in ("font", "style"):  # same source, other targets
        options = scenes.FONTS if transform.name == "font" else scenes.STYLES
        targets = [o for o in options if o not in (params["from"], params["to"])]
        picks = rng.permutation(len(targets))[:2]
        return [transform.pair(spec, {**params, "to": targets[int(i)]}, size)[1] for i in picks]
    misses = []
    for _ in range(6 if transform.name in PARAMETERS else 0):
        other = transform.draw_params(rng)
        if other == params:
            continue
        other_question, other_answer = transform.pair(spec, other, size)
        if np.array_equal(other_question, question):
            misses.append(other_answer)
    return misses[:2]


def _candidates(
    rng: np.random.Generator,
    transform: Transform,
    spec: Spec,
    params: dict,
    question: np.ndarray,
    answer: np.ndarray,
    size: int,
) -> tuple[list[np.ndarray], int, list[str]]:
    """Eight distinct candidates in shuffled order, the answer's index, and how each was made."""
    pool: list[tuple[str, np.ndarray]] = [
        (f"{transform.name}*", a) for a in _near_misses(rng, transform, spec, params, question, size)
    ]
    pool.append(("identity", question))
    others = [name for name in IMAGE_FUNCTIONS if name != transform.name]
    for index in rng.permutation(len(others)):
        other = REGISTRY[others[int(index)]]
        pool.append((other.name, transform_image(other.name, question, other.draw_params(rng))))
    chosen, labels, seen = [answer], [transform.name], {answer.tobytes()}
    for label, image in pool:
        if len(chosen) == CANDIDATES:
            break
        if image.tobytes() not in seen:
            seen.add(image.tobytes())
            chosen.append(image)
            labels.append(label)
    if len(chosen) < CANDIDATES:
        raise _Degenerate("fewer than eight distinct candidates")
    order = rng.permutation(CANDIDATES)
    return [chosen[int(i)] for i in order], int(np.argmax(order == 0)), [labels[int(i)] for i in order]


def _check_options(size: int, transform: str | None, pairs: int | None, options: dict) -> tuple[str, ...]:
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if transform is not None:
        _lookup(transform)
    if pairs is not None and (not isinstance(pairs, int) or not 1 <= pairs <= MAX_PAIRS):
        raise ValueError(f"pairs must be an integer from 1 to {MAX_PAIRS}, got {pairs!r}")
    unknown = set(options) - {"base"}
    if unknown:
        raise ValueError(f"unknown analogy options {sorted(unknown)}; accepted: transform, pairs, base")
    base = options.get("base")
    if base is None:
        return scenes.BASE_KINDS
    if base not in scenes.BASE_KINDS:
        raise ValueError(f"unknown base {base!r}; choose from {', '.join(scenes.BASE_KINDS)}")
    return (base,)


def generate(
    seed: int, size: int = 64, transform: str | None = None, pairs: int | None = None, **options: Any
) -> Puzzle:
    """An analogy puzzle, the same for the same arguments.

    options: ``base`` restricts every scene to one kind of ``puzzles.scenes.BASE_KINDS`` (e.g. "photo").
    """
    kinds = _check_options(size, transform, pairs, options)
    rng = np.random.default_rng(seed)
    names = [transform] if transform else [n for n in TRANSFORMS if set(REGISTRY[n].bases) & set(kinds)]
    if not names:
        raise ValueError(f"no transform applies to base {options.get('base')!r}")
    chosen = REGISTRY[scenes.pick(rng, names)]
    allowed = tuple(k for k in chosen.bases if k in kinds)
    if not allowed:
        raise ValueError(f"transform {chosen.name!r} needs a base among {', '.join(chosen.bases)}")
    count = pairs if pairs is not None else int(rng.integers(1, MAX_PAIRS + 1))
    for attempt in range(10):
        try:
            return _assemble(
                rng, chosen, allowed, count, size, seed, options={"transform": transform, "pairs": pairs, **options}
            )
        except _Degenerate as problem:
            log.debug("seed %s attempt %s redrawn: %s", seed, attempt, problem)
    raise RuntimeError(f"could not build a fair {chosen.name} analogy for seed {seed} at size {size}")


def _assemble(
    rng: np.random.Generator,
    transform: Transform,
    kinds: tuple[str, ...],
    count: int,
    size: int,
    seed: int,
    options: dict,
) -> Puzzle:
    params = transform.draw_params(rng)
    panels: list[np.ndarray] = []
    examples: list[Spec] = []
    for _ in range(count):
        spec, question, answer = _draw_pair(rng, transform, params, kinds, size)
        panels += [question, answer]
        examples.append(spec)
    spec, query, answer = _draw_pair(rng, transform, params, kinds, size)
    candidates, answer_index, labels = _candidates(rng, transform, spec, params, query, answer, size)
    return Puzzle(
        family="analogy",
        panels=[*panels, query],
        answer=answer,
        candidates=candidates,
        answer_index=answer_index,
        title=f"Analogy: {transform.name}",
        layout={"pairs": count},
        tags=[
            "analogy",
            transform.name,
            transform.group,
            spec["kind"],
            *(["seed-task"] if transform.name in SEED_TASKS else []),
        ],
        difficulty=DIFFICULTY[transform.group] + (1 if spec["kind"] == "photo" else 0),
        source={
            "generator": "analogy",
            "version": VERSION,
            "seed": seed,
            "options": {k: v for k, v in options.items() if v is not None},
        },
        meta={
            "transform": transform.name,
            "group": transform.group,
            "params": params,
            "query": spec,
            "examples": examples,
            "candidates": labels,
        },
    )
