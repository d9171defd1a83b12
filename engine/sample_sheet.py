"""A picture of what the model answers at the app's default settings: held-out puzzles, one row each.

    python -m engine.sample_sheet --bundle engine/bundles/default [--per-family 8] [--samples 4] [--puzzles SPEC]

Each row is a puzzle's prompt panels, the true answer (green frame), then the samples drawn at the bundle's sampling
defaults (its manifest's "sampling", what Solve on Play uses), each framed green when its nearest candidate is the
answer and red otherwise. Written to BUNDLE/samples.png, which the model card and the About page show.
`--puzzles` takes engine.evaluate's spec (e.g. `matrix:center` for one layout); default: every family.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine.evaluate import context_panels, entry_options, nearest_candidate, parse_spec
from engine.serving.runtime import Bundle
from puzzles.generators import generate
from puzzles.images import to_square
from puzzles.seeds import eval_seed

FAMILIES = "matrix,analogy,sequence"  # the default spec
RIGHT, WRONG, ANSWER = (40, 160, 40), (220, 40, 40), (40, 160, 40)
GAP = 3  # pixels around each cell
FIRST_INDEX = 5000  # held-out seeds past those the evaluation tables use, so the picture is not cherry-picked


def framed(image: np.ndarray, colour: tuple[int, int, int] | None, width: int = 3) -> np.ndarray:
    out = image.copy()
    if colour is not None:
        out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return np.pad(out, ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=255)


def puzzle_row(bundle: Bundle, family: str, index: int, samples: int, variant: str | None = None) -> np.ndarray:
    """Prompt | answer | samples of one held-out puzzle, as one uint8 strip."""
    size = bundle.image_size
    puzzle = generate(family, eval_seed(FIRST_INDEX + index), size=size,
                      **entry_options(family, variant, index))
    options = bundle.sampling_for(family)
    drawn = bundle.complete(context_panels(bundle, puzzle), n_samples=samples, temperature=options.temperature,
                            top_k=options.top_k, top_p=options.top_p, seed=index, guidance=options.guidance,
                            family=family)
    candidates = [to_square(c, size) for c in puzzle.candidates]
    cells = [framed(to_square(panel, size), None) for panel in puzzle.panels]
    cells.append(np.full((size + 2 * GAP, size // 2, 3), 255, np.uint8))  # a gap before the answer
    cells.append(framed(to_square(puzzle.answer, size), ANSWER))
    cells.append(np.full((size + 2 * GAP, size // 2, 3), 255, np.uint8))
    for sample in drawn:
        right = bool(candidates) and nearest_candidate(sample, candidates) == puzzle.answer_index
        cells.append(framed(sample, RIGHT if right else WRONG))
    return np.concatenate(cells, axis=1)


def sample_sheet(bundle: Bundle, per_family: int = 8, samples: int = 4, spec: str = FAMILIES) -> np.ndarray:
    """The rows of every spec entry, left-aligned on white, as one image."""
    rows = [puzzle_row(bundle, family, index, samples, variant)
            for family, variant in parse_spec(spec) for index in range(per_family)]
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m engine.sample_sheet", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="engine/bundles/default", help="model bundle directory")
    parser.add_argument("--per-family", type=int, default=8, help="held-out puzzles per family")
    parser.add_argument("--samples", type=int, default=4, help="samples per puzzle")
    parser.add_argument("--out", help="PNG to write (default: BUNDLE/samples.png)")
    parser.add_argument("--puzzles", default=FAMILIES, help=f"puzzle spec, as engine.evaluate's (default {FAMILIES})")
    args = parser.parse_args(argv)
    if args.per_family < 1 or args.samples < 1:
        parser.error("--per-family and --samples must be at least 1")
    try:  # a bad spec is refused before the model loads
        for family, variant in parse_spec(args.puzzles):
            entry_options(family, variant, 0)
    except ValueError as error:
        parser.error(str(error))
    bundle = Bundle.load(args.bundle)
    out = Path(args.out) if args.out else Path(args.bundle) / "samples.png"
    Image.fromarray(sample_sheet(bundle, args.per_family, args.samples, args.puzzles)).save(out, optimize=True)
    sys.stdout.write(f"wrote {out}\n")
    return out


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.sample_sheet")
