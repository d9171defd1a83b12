"""The starter pack the bank seeds from: every family, every matrix layout, every analogy transform and
sequence kind, and 40 ARC-AGI-1 training tasks; 96 px images; the same bytes on every build with the same
library versions. The pack is shipped built, not built at start-up: a rebuild elsewhere can differ in a few
images (a rebuild from the shipped one's generators differed in one distractor of 4 of its 318 puzzles, so
those puzzles got new ids), and the ratings in a bank point at the ids it was seeded with.

`python -m puzzles build-starter --out puzzles/starter_pack.zip`
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from puzzles.puzzle import Puzzle
from puzzles.seeds import check_training_seed

STARTER_SIZE = 96
STARTER_SEED_BASE = 900_000_000  # below the held-out range; starter seeds are base + running index
DEFAULT_OUT = Path(__file__).resolve().parent / "starter_pack.zip"
ARC_DATASET = "arcagi1-train"
ARC_TASKS = 40
PER_MATRIX_LAYOUT = 16
PER_ANALOGY_TRANSFORM = 5
PER_SEQUENCE_KIND = 8

logger = logging.getLogger(__name__)


def starter_plan() -> list[tuple[str, dict[str, Any]]]:
    """(family, generator options) for every starter puzzle, in pack order; seeds follow the position."""
    from puzzles.generators import analogy, grid, matrix, sequence

    plan: list[tuple[str, dict[str, Any]]] = []
    plan += [("matrix", {"layout": name}) for name in matrix.LAYOUTS for _ in range(PER_MATRIX_LAYOUT)]
    plan += [("analogy", {"transform": name}) for name in analogy.TRANSFORMS for _ in range(PER_ANALOGY_TRANSFORM)]
    plan += [("sequence", {"kind": name}) for name in sequence.KINDS for _ in range(PER_SEQUENCE_KIND)]
    tasks = grid.load_tasks(ARC_DATASET)
    step = len(tasks) // ARC_TASKS  # evenly spread over the sorted task ids
    plan += [("grid", {"dataset": ARC_DATASET, "task_id": task.id}) for task in tasks[::step][:ARC_TASKS]]
    return plan


def starter_puzzles(size: int = STARTER_SIZE, progress: bool = False) -> Iterator[Puzzle]:
    from puzzles.generators import generate

    plan = starter_plan()
    for index, (family, options) in enumerate(tqdm(plan, desc="starter pack", unit="puzzle", disable=not progress)):
        seed = check_training_seed(STARTER_SEED_BASE + index)
        puzzle = generate(family, seed, size=size, **options)
        if "starter" not in puzzle.tags:
            puzzle.tags = [*puzzle.tags, "starter"]
        yield puzzle


def build_starter(out: str | Path = DEFAULT_OUT, size: int = STARTER_SIZE, progress: bool = False) -> Path:
    """Generate the starter puzzles and write them as a pack; returns the path written."""
    from puzzles.pack import write_pack

    puzzles = list(starter_puzzles(size, progress))
    path = write_pack(puzzles, out)
    logger.info("wrote %d starter puzzles to %s (%.2f MB)", len(puzzles), path, Path(path).stat().st_size / 1e6)
    return Path(path)


def cmd_build_starter(args: argparse.Namespace) -> int:
    build_starter(args.out, args.size, progress=True)
    return 0


def register(subparsers: Any) -> None:
    """Add build-starter."""
    parser = subparsers.add_parser("build-starter", help="build the starter pack the bank seeds from")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"pack to write (default {DEFAULT_OUT.name})")
    parser.add_argument("--size", type=int, default=STARTER_SIZE, help=f"image size (default {STARTER_SIZE})")
    parser.set_defaults(func=cmd_build_starter)
