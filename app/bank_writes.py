"""What visitors write to the bank: ratings of a solve's samples, answers to puzzles, submitted prompts.

A write the bank refuses (read-only file, full disk, database down) becomes a BankWriteError naming what was not
saved, shown to the visitor as is. Each write passes the per-visitor limits (app.limits) first.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.prompts import as_image
from puzzles.images import png_bytes

if TYPE_CHECKING:
    from app.solving import SolveResult
    from puzzles.bank import Bank

log = logging.getLogger(__name__)


class BankWriteError(ValueError):
    """The bank refused a write (read-only file, full disk, database down): shown to the visitor as is."""


@contextmanager
def bank_write(what: str) -> Iterator[None]:
    """Turn a database failure during a write into BankWriteError naming what was not saved and why."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    try:
        yield
    except (OperationalError, DBAPIError) as error:
        reason = str(getattr(error, "orig", error)).splitlines()[0][:200]
        log.error("bank write failed (%s): %s", what, reason)
        raise BankWriteError(f"{what} could not be saved: the bank is not accepting writes right now "
                             f"({reason}); please try again later") from error


def save_png(directory: str | Path, image: np.ndarray) -> str:
    """Write an image once under `directory`, named by its content hash; returns the path."""
    data = png_bytes(image)
    path = Path(directory) / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def save_run(temp_dir: str | Path, prompt: Sequence[np.ndarray], result: SolveResult,
             puzzle_id: str | None) -> dict[str, Any]:
    """What a later rating needs about a solve, as file paths and plain values (kept in gr.State)."""
    directory = Path(temp_dir) / "runs"
    return {
        "prompt": [save_png(directory, image) for image in prompt],
        "samples": [save_png(directory, image) for image in result.samples],
        "settings": result.settings.as_dict(),
        "bundle_id": result.bundle_id,
        "puzzle_id": puzzle_id,
    }


def rate_sample(
    bank: Bank, visitor_id: str, run: Mapping[str, Any] | None, sample: int, vote: str, correct: bool
) -> int:
    """Store this visitor's rating of sample `sample` (0-based) of the last solve; a second one updates the first."""
    from puzzles.bank import repository

    if not run or not run.get("samples"):
        raise ValueError("solve first: there is no sample to rate")
    if vote not in ("up", "down"):
        raise ValueError(f"a rating is 'up' or 'down', not {vote!r}")
    samples = run["samples"]
    if not 0 <= sample < len(samples):
        raise ValueError(f"there is no sample {sample + 1}: the last solve made {len(samples)}, "
                         f"numbered 1 to {len(samples)}")
    from app import limits

    limits.ratings.check(bank, visitor_id)
    output = as_image(samples[sample])
    puzzle_id = run.get("puzzle_id") or None
    prompt = None if puzzle_id else [as_image(path) for path in run["prompt"]]
    with bank_write("your rating"):
        return repository.add_rating(
            bank, visitor=visitor_id, output=output, score=1 if vote == "up" else -1, puzzle_id=puzzle_id,
            prompt=prompt, bundle_id=run.get("bundle_id", ""), settings=dict(run.get("settings") or {}),
            sample_index=sample, is_correct=bool(correct),
        )


def submit_prompt(
    bank: Bank, visitor_id: str, layout: str, images: Sequence[np.ndarray], answer: np.ndarray | None,
    candidates: Sequence[np.ndarray], title: str,
) -> str:
    """Save the prompt as a pending puzzle; candidates are kept when the answer is one of them."""
    from puzzles.bank import repository
    from puzzles.puzzle import Puzzle, image_hash

    answer_index = None
    if answer is not None and candidates:
        wanted = image_hash(answer)
        answer_index = next((i for i, c in enumerate(candidates) if image_hash(c) == wanted), None)
    layout_hint: dict[str, Any] = {"kind": layout}
    if layout == "analogy":
        layout_hint["pairs"] = (len(images) - 1) // 2
    puzzle = Puzzle(
        family=layout, panels=list(images), answer=answer,
        candidates=list(candidates) if answer_index is not None else [], answer_index=answer_index,
        title=title.strip()[:200] or f"Visitor {layout}", layout=layout_hint, source={"submitted": "playground"},
    )
    try:
        with bank_write("your puzzle"):
            return repository.submit_puzzle(bank, puzzle, visitor_id)
    except repository.PuzzleExistsError as error:
        raise ValueError("this puzzle is already in the bank") from error  # its id means nothing to a visitor


def record_attempt(bank: Bank, visitor_id: str, puzzle_id: str, choice: int | None, seconds: float | None,
                   correct: bool | None = None) -> bool:
    """Store a visitor's answer; `correct` is given for puzzles checked without candidates (ARC grids)."""
    from app import limits
    from puzzles.bank import repository

    limits.attempts.check(bank, visitor_id)
    try:
        with bank_write("your answer"):
            return repository.add_attempt(bank, puzzle_id, visitor_id, choice, seconds=seconds, correct=correct)
    except repository.NotFoundError as error:
        raise ValueError(str(error)) from error
