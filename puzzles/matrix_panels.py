"""How a Raven-style matrix panel is laid out and drawn: the layouts and their components, the levels of size and
grey, and a panel's shapes from its attributes. The matrix generator draws its puzzles with it; the bundle's matrix
path (engine/serving/matrix_path.py) reads the same vocabulary and draws the answers it writes, without the
generators.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from puzzles.draw import SHAPE_KINDS, Shape, render

LAYOUTS = ("center", "grid2x2", "grid3x3", "left_right", "up_down", "out_in", "out_in_grid")
SIZE_LEVELS = (0.5, 0.625, 0.75, 0.875, 1.0)  # fraction of a slot's largest radius; ratios stay visible at 64 px
GREY_LEVELS = (255, 205, 155, 105, 55, 0)  # level 0 is white (an outlined shape), level 5 black
LINE_GREY = 0
MAX_LINE_TO_RADIUS = 0.25  # thicker outlines would swallow the fill (and so the colour) of small shapes


@dataclass(frozen=True)
class Component:
    """A part of the layout; slots are (x, y, largest radius) as fractions of the panel."""

    name: str
    role: str  # "single": one shape | "grid": slots with number/position | "outer": a large outlined frame
    slots: tuple[tuple[float, float, float], ...]
    types: tuple[int, ...] = tuple(range(len(SHAPE_KINDS)))  # allowed shape types (indices, consecutive)


def _grid_slots(cells: int, half: float = 0.5, room: float = 0.8) -> tuple[tuple[float, float, float], ...]:
    """cells x cells slots, row-major, filling a square of half-side `half` around the panel centre."""
    cell = 2 * half / cells
    coords = [0.5 - half + cell * (i + 0.5) for i in range(cells)]
    return tuple((x, y, cell / 2 * room) for y in coords for x in coords)


# A triangle frame would leave too little room inside; around a grid even a square is too tight.
_OUTER = Component("outer", "outer", ((0.5, 0.5, 0.46),), types=(1, 2, 3, 4))
_OUTER_ROUND = Component("outer", "outer", ((0.5, 0.5, 0.46),), types=(2, 3, 4))
LAYOUT_COMPONENTS: dict[str, tuple[Component, ...]] = {
    "center": (Component("main", "single", ((0.5, 0.5, 0.40),)),),
    "grid2x2": (Component("main", "grid", _grid_slots(2)),),
    "grid3x3": (Component("main", "grid", _grid_slots(3, room=0.88)),),
    "left_right": (
        Component("left", "single", ((0.25, 0.5, 0.21),)),
        Component("right", "single", ((0.75, 0.5, 0.21),)),
    ),
    "up_down": (
        Component("top", "single", ((0.5, 0.25, 0.21),)),
        Component("bottom", "single", ((0.5, 0.75, 0.21),)),
    ),
    # Inner parts stay inside the incircle of the tightest frame allowed, minus the thickest line.
    "out_in": (_OUTER, Component("inner", "single", ((0.5, 0.5, 0.24),))),
    "out_in_grid": (_OUTER_ROUND, Component("inner", "grid", _grid_slots(2, half=0.28, room=0.85))),
}

State = dict[str, dict[str, Any]]  # component name -> {"type", "size", "colour", "positions"}


def panel_shapes(layout: str, state: State, style: dict[str, Any], placements: dict) -> list[Shape]:
    shapes = []
    scale = style["scale"]
    for component in LAYOUT_COMPONENTS[layout]:
        cell = state[component.name]
        for slot in sorted(cell["positions"]):
            x, y, largest = component.slots[slot]
            dx, dy, rotation = placements[(component.name, slot)]
            outer = component.role == "outer"
            radius = largest * SIZE_LEVELS[cell["size"]] * scale
            shapes.append(
                Shape(
                    kind=SHAPE_KINDS[cell["type"]],
                    center=(0.5 + (x + dx - 0.5) * scale, 0.5 + (y + dy - 0.5) * scale),
                    radius=radius,
                    rotation=rotation,
                    fill=None if outer or (style["fill"] == "outline" and cell["colour"] == 0)
                    else GREY_LEVELS[cell["colour"]],
                    outline=LINE_GREY,
                    line_width=min(style["line_width"], MAX_LINE_TO_RADIUS * radius),
                )
            )
    return shapes


PLAIN_STYLE = {"line_width": 0.03, "fill": "grey", "jitter": 0.0, "scale": 1.0, "rotation": 0.0}


def draw_state(layout: str, state: State, size: int) -> np.ndarray:
    """One panel drawn from its attributes alone (uint8 RGB), in the plain style: no jitter, turn or scaling.
    The matrix path of a model bundle draws the answers it predicts with it."""
    placements = {(component.name, slot): (0.0, 0.0, 0.0)
                  for component in LAYOUT_COMPONENTS[layout] for slot in range(len(component.slots))}
    return render(panel_shapes(layout, state, PLAIN_STYLE, placements), size)
