"""Generate puzzles from parameters for curators: preview a sample, then add a batch to the bank as drafts.

`GeneratorRequest.from_inputs` turns what a form sends (empty strings and "any" meaning "let the seed
choose") into checked generator options; `preview` renders a few puzzles without touching the bank;
`add_drafts` stores the whole batch as drafts, audited under the curator's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from puzzles.bank.curation import create_puzzles
from puzzles.bank.db import Bank
from puzzles.generators import GENERATOR_FAMILIES, generate
from puzzles.puzzle import Puzzle

log = logging.getLogger(__name__)

MAX_BATCH = 200  # puzzles per request: generation runs inside a web request
MAX_PREVIEW = 8
MIN_SIZE, MAX_SIZE = 16, 256
ANY = "any"


def _choices(family: str) -> dict[str, tuple[Any, ...]]:
    """The options each family's generator understands and their allowed values (None: any integer)."""
    if family == "matrix":
        from puzzles.generators import matrix

        return {"layout": matrix.LAYOUTS, "difficulty": (1, 2, 3, 4, 5), "fill": matrix.FILL_MODES}
    if family == "analogy":
        from puzzles import scenes
        from puzzles.generators import analogy

        return {"transform": analogy.TRANSFORMS, "pairs": tuple(range(1, analogy.MAX_PAIRS + 1)),
                "base": scenes.BASE_KINDS}
    if family == "sequence":
        from puzzles.generators import sequence

        return {"kind": sequence.KINDS, "frames": tuple(range(sequence.MIN_FRAMES, sequence.MAX_FRAMES + 1))}
    if family == "grid":
        from puzzles.generators import grid

        return {"dataset": grid.DATASETS, "task_id": ()}  # () : free text, checked by the generator
    raise ValueError(f"no generator for family {family!r}; choose from {', '.join(GENERATOR_FAMILIES)}")


def option_choices(family: str) -> dict[str, list[str]]:
    """For a form: each option of the family with its choices as strings ("any" first)."""
    return {name: [ANY, *map(str, values)] for name, values in _choices(family).items()}


def _parse_option(family: str, name: str, raw: Any, allowed: tuple[Any, ...]) -> Any:
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", ANY)):
        return None
    if not allowed:  # free text
        return str(raw).strip()
    problem = f"{family} option {name} must be one of {', '.join(map(str, allowed))}, got {raw!r}"
    try:
        value = type(allowed[0])(raw)
    except (TypeError, ValueError) as error:
        raise ValueError(problem) from error
    if value not in allowed:
        raise ValueError(problem)
    return value


@dataclass(frozen=True)
class GeneratorRequest:
    """A checked batch request: family, first seed, how many, image size and generator options."""

    family: str
    seed: int
    count: int = 1
    size: int = 64
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_inputs(cls, family: str, seed: Any, count: Any, size: Any, options: Mapping[str, Any]) -> GeneratorRequest:
        """From form values; options that are empty or "any" are left to the seed. ValueError names a bad input."""
        allowed = _choices(family)
        unknown = set(options) - set(allowed)
        if unknown:
            raise ValueError(f"unknown {family} option(s) {', '.join(sorted(unknown))}; accepted: {', '.join(allowed)}")
        parsed = {name: _parse_option(family, name, options.get(name), allowed[name]) for name in allowed}
        chosen = {name: value for name, value in parsed.items() if value is not None}
        if family == "matrix" and "fill" in chosen:
            chosen["style"] = {"fill": chosen.pop("fill")}
        return cls(family, _int("seed", seed, 0, 2**31 - 1), _int("count", count, 1, MAX_BATCH),
                   _int("size", size, MIN_SIZE, MAX_SIZE), chosen)

    def seeds(self) -> range:
        return range(self.seed, self.seed + self.count)


def _int(name: str, raw: Any, low: int, high: int) -> int:
    try:
        value = int(raw)
        if value != float(raw):
            raise ValueError
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from error
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def generate_batch(request: GeneratorRequest, limit: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[Puzzle]:
    """The request's puzzles, one per seed (the first `limit` only when given). Deterministic."""
    seeds = list(request.seeds())[:limit] if limit is not None else list(request.seeds())
    puzzles = []
    for done, seed in enumerate(seeds):
        puzzle = generate(request.family, seed, size=request.size, **request.options)
        puzzle.tags = list(dict.fromkeys([*puzzle.tags, "generated"]))
        puzzles.append(puzzle)
        if progress is not None:
            progress(done + 1, len(seeds))
    return puzzles


def preview(request: GeneratorRequest) -> list[Puzzle]:
    """A sample of the batch (its first MAX_PREVIEW puzzles) to look at before adding anything."""
    return generate_batch(request, limit=MAX_PREVIEW)


def describe(puzzle: Puzzle) -> str:
    """One line per puzzle for a preview: id, title, difficulty and what the generator chose."""
    chosen = {k: v for k, v in puzzle.source.items() if k not in ("generator", "version")}
    return f"{puzzle.id} · {puzzle.title or puzzle.family} · level {puzzle.difficulty} · {chosen}"


def add_drafts(bank: Bank, request: GeneratorRequest, curator: str,
               progress: Callable[[int, int], None] | None = None) -> dict[str, list[str]]:
    """Generate the whole batch and add it as drafts (one transaction, audited); duplicates are skipped."""
    puzzles = generate_batch(request, progress=progress)
    result = create_puzzles(bank, puzzles, curator, status="draft")
    log.info("%s generated %d %s drafts from seed %d", curator, len(result["added"]), request.family, request.seed)
    return result
