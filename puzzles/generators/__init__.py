"""Puzzle generators: deterministic by seed, rendered at any size.

Each family module exposes `generate(seed: int, size: int = 64, **options) -> Puzzle` and a
`VERSION` string; `generate` here dispatches by family name.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from puzzles.puzzle import Puzzle

GENERATOR_FAMILIES = ("matrix", "analogy", "sequence", "grid")
# what `family:variant` sets: the generator option, and the family module's tuple of its values
VARIANT_OPTIONS = {"matrix": ("layout", "LAYOUTS"), "analogy": ("transform", "TRANSFORMS"),
                   "sequence": ("kind", "KINDS")}


def generate(family: str, seed: int, size: int = 64, **options: Any) -> Puzzle:
    if family not in GENERATOR_FAMILIES:
        raise ValueError(f"no generator for family {family!r}; choose from {', '.join(GENERATOR_FAMILIES)}")
    module = importlib.import_module(f"puzzles.generators.{family}")
    _check_option_names(family, module.generate, options)
    return module.generate(seed, size=size, **options)


def _check_option_names(family: str, function: Any, options: dict[str, Any]) -> None:
    """An unknown option is bad input (ValueError), not a TypeError from deep inside the call."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # the family checks its own options
    known = [name for name in parameters if name not in ("seed", "size")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{family} has no option {', '.join(unknown)}; choose from {', '.join(known)}")


def variant_values(family: str) -> tuple[str, tuple[str, ...]]:
    """The generator option a variant (`matrix:center`) sets, and its values."""
    if family not in VARIANT_OPTIONS:
        raise ValueError(f"{family!r} has no variants; choose from {', '.join(VARIANT_OPTIONS)}")
    option, values = VARIANT_OPTIONS[family]
    return option, tuple(getattr(importlib.import_module(f"puzzles.generators.{family}"), values))


def variant_options(family: str, variant: str | None) -> dict[str, str]:
    """Generator options for one variant ('matrix', 'center' -> {'layout': 'center'}); none for None."""
    if variant is None:
        return {}
    option, values = variant_values(family)
    if variant not in values:
        raise ValueError(f"unknown {family} {option} {variant!r}; choose from {', '.join(values)}")
    return {option: variant}
