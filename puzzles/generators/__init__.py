"""Puzzle generators: deterministic by seed, rendered at any size.

Each family module exposes `generate(seed: int, size: int = 64, **options) -> Puzzle` and a
`VERSION` string; `generate` here dispatches by family name.
"""
from __future__ import annotations

import importlib
from typing import Any

from puzzles.puzzle import Puzzle

GENERATOR_FAMILIES = ("matrix", "analogy", "sequence", "grid")


def generate(family: str, seed: int, size: int = 64, **options: Any) -> Puzzle:
    if family not in GENERATOR_FAMILIES:
        raise ValueError(f"no generator for family {family!r}; choose from {', '.join(GENERATOR_FAMILIES)}")
    module = importlib.import_module(f"puzzles.generators.{family}")
    return module.generate(seed, size=size, **options)
