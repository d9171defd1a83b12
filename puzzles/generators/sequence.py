"""Sequence puzzles: frames f1 .. fn of motion or change -> f(n+1).

Each kind draws parameters once (shape, colour, start, velocity, ...) and renders frame ``step`` from
them alone, so ``render_step(kind, params, step, size)`` recomputes any frame. Frame i of the prompt is
step i - 1; the answer is step n. Distractors are other steps (the last frame again, one step too far,
the wrong direction) and the answer with one attribute wrong (colour, shape, size, position).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from puzzles import scenes
from puzzles.puzzle import Puzzle
from puzzles.scenes import Spec

VERSION = "1.0"
log = logging.getLogger(__name__)

MIN_FRAMES, MAX_FRAMES = 3, 8
CANDIDATES = 8
GRID = 4  # count_up places objects on a GRID x GRID lattice
KINDS = ("translate", "rotate", "grow", "shrink", "colour_cycle", "count_up", "bounce")


# --- parameters per kind (drawn once; `frames` is the prompt length n) --------------------------------------


def _base(rng: np.random.Generator, shapes: tuple = scenes.SHAPES) -> dict:
    background = list(scenes.pick(rng, scenes.BACKGROUND_COLOURS))
    return {
        "background": background,
        "shape": scenes.pick(rng, shapes),
        "colour": scenes.pick_colours(rng, 1, avoid=(tuple(background),))[0],
    }


def _translate_params(rng: np.random.Generator, frames: int) -> dict:
    radius = float(rng.uniform(0.09, 0.14))
    heading = math.radians(45 * int(rng.integers(8)))
    # Steps 0 .. frames + 2 must stay inside the frame: distractors render one step past the answer.
    speed = (1 - 2 * radius) / (frames + 2) * float(rng.uniform(0.7, 1.0))
    velocity = [speed * math.cos(heading), speed * math.sin(heading)]
    start = [_start_for(v, radius, frames + 2, rng) for v in velocity]
    return {**_base(rng), "r": radius, "start": start, "velocity": velocity}


def _start_for(velocity: float, radius: float, steps: int, rng: np.random.Generator) -> float:
    low, high = radius - min(0.0, velocity * steps), 1 - radius - max(0.0, velocity * steps)
    return float(rng.uniform(low, max(low, high)))


def _bounce_params(rng: np.random.Generator, frames: int) -> dict:
    radius = float(rng.uniform(0.09, 0.13))
    span = 1 - 2 * radius
    # Fast enough that the object meets a wall inside the prompt, slow enough to be followed.
    speed = span * float(rng.uniform(1.2, 2.0)) / frames
    speed = min(speed, span * 0.45)
    heading = math.radians(float(scenes.pick(rng, (20, 35, 55, 70, 110, 125, 145, 160, 200, 235, 305, 325))))
    return {
        **_base(rng),
        "r": radius,
        "start": [float(v) for v in rng.uniform(radius, 1 - radius, size=2)],
        "velocity": [speed * math.cos(heading), speed * math.sin(heading)],
    }


def _rotate_params(rng: np.random.Generator, frames: int) -> dict:
    delta = float(scenes.pick(rng, (30, 45, 60, 90))) * float(scenes.pick(rng, (-1, 1)))
    return {
        **_base(rng, scenes.ASYMMETRIC_SHAPES),
        "r": 0.3,
        "start_angle": float(scenes.pick(rng, (0, 45, 90, 180))),
        "delta": delta,
    }


def _grow_params(rng: np.random.Generator, frames: int, grow: bool = True) -> dict:
    smallest, largest = 0.06, 0.46
    step = (largest - smallest) / (frames + 2) * float(rng.uniform(0.6, 1.0))
    first = smallest if grow else largest
    return {**_base(rng), "start_r": first, "delta_r": step if grow else -step, "angle": 0.0}


def _colour_cycle_params(rng: np.random.Generator, frames: int) -> dict:
    base = _base(rng)
    cycle = scenes.pick_colours(rng, int(rng.integers(2, 5)), avoid=(tuple(base["background"]),))
    return {**base, "cycle": cycle, "r": float(rng.uniform(0.22, 0.32)), "offset": int(rng.integers(len(cycle)))}


def _count_params(rng: np.random.Generator, frames: int) -> dict:
    most = GRID * GRID - (frames + 2)  # room for the answer and one-too-many distractors
    return {**_base(rng), "start_count": int(rng.integers(1, max(1, min(4, most)) + 1)), "cells": _fill_order(rng)}


def _fill_order(rng: np.random.Generator) -> list[int]:
    """Rows or columns, forwards or backwards: the next object's cell follows from the frames."""
    cells = np.arange(GRID * GRID).reshape(GRID, GRID)
    cells = cells if rng.random() < 0.5 else cells.T
    order = [int(c) for c in cells.ravel()]
    return order if rng.random() < 0.5 else order[::-1]


PARAMETERS: dict[str, Callable[[np.random.Generator, int], dict]] = {
    "translate": _translate_params,
    "rotate": _rotate_params,
    "grow": _grow_params,
    "shrink": lambda rng, frames: _grow_params(rng, frames, grow=False),
    "colour_cycle": _colour_cycle_params,
    "count_up": _count_params,
    "bounce": _bounce_params,
}


# --- state at a step --------------------------------------------------------------------------------------


def _object(params: dict, **overrides: Any) -> Spec:
    obj = {
        "shape": params["shape"],
        "cx": 0.5,
        "cy": 0.5,
        "r": params.get("r", 0.25),
        "angle": 0.0,
        "colour": params["colour"],
    }
    return {**obj, **overrides}


def _reflect(position: float, low: float, high: float) -> float:
    """Position after bouncing between walls at low and high (a triangle wave)."""
    span = high - low
    phase = (position - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


def objects_at(kind: str, params: dict, step: int) -> list[Spec]:
    """The objects of frame `step` (step 0 is the first frame)."""
    if kind == "translate":
        x, y = (s + v * step for s, v in zip(params["start"], params["velocity"], strict=True))
        return [_object(params, cx=x, cy=y)]
    if kind == "bounce":
        low, high = params["r"], 1 - params["r"]
        x, y = (_reflect(s + v * step, low, high) for s, v in zip(params["start"], params["velocity"], strict=True))
        return [_object(params, cx=x, cy=y)]
    if kind == "rotate":
        return [_object(params, angle=(params["start_angle"] + params["delta"] * step) % 360)]
    if kind in ("grow", "shrink"):
        return [_object(params, r=max(0.02, params["start_r"] + params["delta_r"] * step))]
    if kind == "colour_cycle":
        cycle = params["cycle"]
        return [_object(params, colour=cycle[(params["offset"] + step) % len(cycle)])]
    if kind == "count_up":
        count = max(0, min(GRID * GRID, params["start_count"] + step))
        return [_cell_object(params, cell) for cell in params["cells"][:count]]
    raise ValueError(f"unknown sequence kind {kind!r}; choose from {', '.join(KINDS)}")


def _cell_object(params: dict, cell: int) -> Spec:
    row, column = divmod(cell, GRID)
    return _object(params, cx=(column + 0.5) / GRID, cy=(row + 0.5) / GRID, r=0.38 / GRID)


def render_objects(params: dict, objects: list[Spec], size: int) -> np.ndarray:
    spec = {"kind": "shapes", "background": {"pattern": "flat", "colours": [params["background"]]}, "objects": objects}
    return scenes.render(spec, size)


def render_step(kind: str, params: dict, step: int, size: int = 64) -> np.ndarray:
    """Frame `step` of a sequence (the answer of an n-frame puzzle is step n)."""
    return render_objects(params, objects_at(kind, params, step), size)


# --- distractors ------------------------------------------------------------------------------------------


def wrong_answers(rng: np.random.Generator, kind: str, params: dict, frames: int) -> list[tuple[str, list[Spec]]]:
    """Labelled object lists that are almost the answer (one rule or attribute wrong)."""
    answer = objects_at(kind, params, frames)
    used = (tuple(params["background"]), tuple(params["colour"]), *(tuple(c) for c in params.get("cycle", [])))
    other_colours = scenes.pick_colours(rng, 2, avoid=used)
    other_shape = scenes.pick(rng, [s for s in scenes.SHAPES if s != params["shape"]])
    nudge = float(scenes.pick(rng, (-0.15, 0.15)))
    wrong = [
        ("last frame", objects_at(kind, params, frames - 1)),
        ("two steps", objects_at(kind, params, frames + 1)),
        ("wrong direction", objects_at(kind, params, frames - 2)),
        ("first frame", objects_at(kind, params, 0)),
        *(("wrong colour", [{**o, "colour": colour} for o in answer]) for colour in other_colours),
        ("wrong shape", [{**o, "shape": other_shape} for o in answer]),
        ("smaller", [{**o, "r": o["r"] * 0.65} for o in answer]),
        ("larger", [{**o, "r": min(0.48, o["r"] * 1.4)} for o in answer]),
        ("wrong place", [{**o, "cx": min(0.85, max(0.15, o["cx"] + nudge))} for o in answer]),
        ("wrong place", [{**o, "cy": min(0.85, max(0.15, o["cy"] - nudge))} for o in answer]),
        ("mirrored", [{**o, "cx": 1 - o["cx"], "angle": -o["angle"] % 360} for o in answer]),
        ("three steps", objects_at(kind, params, frames + 2)),
    ]
    if kind == "colour_cycle":
        wrong += [(f"cycle colour {i}", [{**o, "colour": c} for o in answer]) for i, c in enumerate(params["cycle"])]
    return wrong


def _candidates(
    rng: np.random.Generator, kind: str, params: dict, frames: int, answer: np.ndarray, size: int
) -> tuple[list[np.ndarray], int, list[str]]:
    wrong = wrong_answers(rng, kind, params, frames)
    chosen, labels, seen = [answer], ["answer"], {answer.tobytes()}
    for index in rng.permutation(len(wrong)):
        label, objects = wrong[int(index)]
        image = render_objects(params, objects, size)
        if image.tobytes() not in seen:
            seen.add(image.tobytes())
            chosen.append(image)
            labels.append(label)
        if len(chosen) == CANDIDATES:
            break
    if len(chosen) < CANDIDATES:
        raise RuntimeError(f"only {len(chosen)} distinct candidates for a {kind} sequence")
    order = rng.permutation(CANDIDATES)
    return [chosen[int(i)] for i in order], int(np.argmax(order == 0)), [labels[int(i)] for i in order]


# --- the generator ----------------------------------------------------------------------------------------


def _check_options(size: int, kind: str | None, frames: int | None, options: dict) -> None:
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown sequence kind {kind!r}; choose from {', '.join(KINDS)}")
    if frames is not None and (not isinstance(frames, int) or not MIN_FRAMES <= frames <= MAX_FRAMES):
        raise ValueError(f"frames must be an integer from {MIN_FRAMES} to {MAX_FRAMES}, got {frames!r}")
    if options:
        raise ValueError(f"unknown sequence options {sorted(options)}; accepted: kind, frames")


def generate(seed: int, size: int = 64, kind: str | None = None, frames: int | None = None, **options: Any) -> Puzzle:
    """A sequence puzzle, the same for the same arguments."""
    _check_options(size, kind, frames, options)
    rng = np.random.default_rng(seed)
    requested = {key: value for key, value in (("kind", kind), ("frames", frames)) if value is not None}
    kind = kind or scenes.pick(rng, KINDS)
    count = frames if frames is not None else int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    params = PARAMETERS[kind](rng, count)
    panels = [render_step(kind, params, step, size) for step in range(count)]
    answer = render_step(kind, params, count, size)
    candidates, answer_index, labels = _candidates(rng, kind, params, count, answer, size)
    return Puzzle(
        family="sequence",
        panels=panels,
        answer=answer,
        candidates=candidates,
        answer_index=answer_index,
        title=f"Sequence: {kind.replace('_', ' ')}",
        layout={"frames": count},
        tags=["sequence", kind],
        difficulty=2 if kind in ("bounce", "colour_cycle") else 1,
        source={"generator": "sequence", "version": VERSION, "seed": seed, "options": requested},
        meta={"kind": kind, "params": params, "candidates": labels},
    )
