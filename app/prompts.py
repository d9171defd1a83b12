"""Prompts: Play's slots and layouts, and how the filled slots become the images of a prompt.

Nothing here builds UI or calls the model; handlers pass plain values (numpy images, file paths, gallery
items), so each step can be tested without a browser.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from puzzles.images import to_rgb_array
from puzzles.puzzle import MAX_CANDIDATES

LAYOUTS = ("analogy", "sequence", "matrix")
MAX_PAIRS = 3
MAX_FRAMES = 8
MATRIX_CELLS = 8
ANALOGY_SLOTS = tuple(slot for k in range(1, MAX_PAIRS + 1) for slot in (f"slot-a{k}", f"slot-a{k}p")) + ("slot-b",)
SEQUENCE_SLOTS = tuple(f"seq-{k}" for k in range(1, MAX_FRAMES + 1))
MATRIX_SLOTS = tuple(f"cell-{k}" for k in range(1, MATRIX_CELLS + 1))
ALL_SLOTS = ANALOGY_SLOTS + SEQUENCE_SLOTS + MATRIX_SLOTS
CANDIDATES_RULE = "candidates can be ranked at once"  # at most MAX_CANDIDATES: each costs the model a scoring run
MOST_PROMPT_IMAGES = max(len(ANALOGY_SLOTS), len(SEQUENCE_SLOTS), len(MATRIX_SLOTS))


def slot_label(slot: str) -> str:
    """What a slot box shows above it, e.g. slot-a2p -> A2', seq-3 -> frame 3, cell-5 -> row 2, col 2."""
    if slot == "slot-b":
        return "B"
    if slot.startswith("slot-a"):
        number = slot[len("slot-a"):]
        return f"A{number[:-1]}'" if number.endswith("p") else f"A{number}"
    if slot.startswith("seq-"):
        return f"frame {slot[4:]}"
    if slot.startswith("cell-"):
        index = int(slot[5:]) - 1
        return f"row {index // 3 + 1}, col {index % 3 + 1}"
    raise ValueError(f"unknown slot {slot!r}")


def as_image(value: Any) -> np.ndarray | None:
    """Whatever a slot holds (None, numpy array, PIL image, file path) -> uint8 RGB array or None."""
    if value is None:
        return None
    from PIL import Image

    if isinstance(value, (np.ndarray, Image.Image)):
        return to_rgb_array(value)
    if isinstance(value, (tuple, list)) and value:  # gallery items come as (path, caption)
        return as_image(value[0])
    if isinstance(value, dict) and ("path" in value or "image" in value):
        return as_image(value.get("path") or value.get("image"))
    from app.uploads import read_upload_file

    return read_upload_file(str(value))  # a file: read with the upload checks, so a bad one is named


def check_count(count: int, most: int, rule: str) -> None:
    """ValueError in words ("at most {most} {rule}, got {count}") when there are too many."""
    if count > most:
        raise ValueError(f"at most {most} {rule}, got {count}")


def check_candidate_count(count: int) -> None:
    check_count(count, MAX_CANDIDATES, CANDIDATES_RULE)


def counted_images(values: Sequence[Any] | None, most: int, rule: str) -> list[np.ndarray]:
    """Files or images -> RGB arrays; more than `most` are refused (check_count) before any is read (each read
    costs a decode)."""
    values = list(values or [])
    check_count(len(values), most, rule)
    return [as_image(value) for value in values]


def candidate_images(values: Sequence[Any] | None) -> list[np.ndarray]:
    """A gallery's or a program's candidates -> images, counted first."""
    return counted_images(values, MAX_CANDIDATES, CANDIDATES_RULE)


def prompt_images(layout: str, slots: Mapping[str, Any], pairs: int = 1) -> list[np.ndarray]:
    """The prompt images in sentence order for a layout, checking that every needed slot is filled (only the
    layout's own slots are read: another layout's images may stay in theirs).

    analogy: A1, A1', ..., Ak, Ak', B (k = pairs); sequence: the filled frames 1..n, no gaps;
    matrix: the 8 cells row-major. (engine.serving.sentences then turns the images' codes into the model's tokens.)
    """
    own = {"analogy": ANALOGY_SLOTS, "sequence": SEQUENCE_SLOTS, "matrix": MATRIX_SLOTS}.get(layout, ())
    images = {slot: as_image(slots.get(slot)) for slot in own}
    if layout == "analogy":
        if not 1 <= int(pairs) <= MAX_PAIRS:
            raise ValueError(f"an analogy has 1 to {MAX_PAIRS} example pairs, not {pairs}")
        names = [name for k in range(1, int(pairs) + 1) for name in (f"slot-a{k}", f"slot-a{k}p")] + ["slot-b"]
        missing = [slot_label(name) for name in names if images[name] is None]
        if missing:
            raise ValueError(f"fill every analogy slot first; empty: {', '.join(missing)}")
        return [images[name] for name in names]
    if layout == "sequence":
        filled = [images[name] for name in SEQUENCE_SLOTS]
        count = next((i for i, image in enumerate(filled) if image is None), len(filled))
        if any(image is not None for image in filled[count:]):
            raise ValueError(f"frames must be filled in order without gaps; frame {count + 1} is empty")
        if count < 2:
            raise ValueError("a sequence needs at least 2 frames")
        return filled[:count]
    if layout == "matrix":
        missing = [slot_label(name) for name in MATRIX_SLOTS if images[name] is None]
        if missing:
            raise ValueError(f"fill all 8 matrix cells first; empty: {', '.join(missing)}")
        return [images[name] for name in MATRIX_SLOTS]
    raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")


def slots_from_puzzle(
    family: str, panels: Sequence[np.ndarray], layout: Mapping[str, Any] | None = None
) -> tuple[str, int, dict[str, np.ndarray | None]]:
    """Where a puzzle's panels go: (play layout, analogy pairs, slot -> image); other slots empty. An ARC task with
    more example pairs than Play holds keeps its first MAX_PAIRS pairs and its test input."""
    slots: dict[str, np.ndarray | None] = {slot: None for slot in ALL_SLOTS}
    panels = list(panels)
    if family == "grid" and len(panels) > 2 * MAX_PAIRS + 1:  # in/out pairs + test input: keep what Play holds
        panels = panels[: 2 * MAX_PAIRS] + panels[-1:]
    if family == "matrix":
        if len(panels) != MATRIX_CELLS:
            raise ValueError(f"a matrix puzzle has 8 panels, this one has {len(panels)}")
        slots.update(zip(MATRIX_SLOTS, panels, strict=True))
        return "matrix", 1, slots
    if family in ("analogy", "grid") and len(panels) % 2 == 1 and 3 <= len(panels) <= 2 * MAX_PAIRS + 1:
        pairs = (len(panels) - 1) // 2
        names = [name for k in range(1, pairs + 1) for name in (f"slot-a{k}", f"slot-a{k}p")] + ["slot-b"]
        slots.update(zip(names, panels, strict=True))
        return "analogy", pairs, slots
    if 2 <= len(panels) <= MAX_FRAMES:
        slots.update(zip(SEQUENCE_SLOTS, panels, strict=False))
        return "sequence", 1, slots
    raise ValueError(f"a {family} puzzle with {len(panels)} panels does not fit the play layouts")
