"""Storage internals of the bank: images by content hash, puzzle rows, validation.

The bank's modules build their verb-named functions on these; the app never imports this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import exists, not_, select
from sqlalchemy.orm import Session

from puzzles.bank.models import (
    STATUSES,
    AuditEntry,
    Curator,
    Image,
    ModelResult,
    PuzzleCandidate,
    PuzzlePanel,
    PuzzleRow,
    PuzzleTag,
    utc_now,
)
from puzzles.images import png_bytes, to_rgb_array
from puzzles.puzzle import FAMILIES, MAX_CANDIDATES, Puzzle

MAX_TITLE_LENGTH = 1000
MAX_VISITOR_LENGTH = 128  # the visitor_id / submitted_by columns
MAX_BUNDLE_LENGTH = 128  # the bundle_id columns
IMAGE_CHUNK = 200  # rows per multi-row INSERT, well under SQLite's bound-parameter limit


class NotFoundError(LookupError):
    """A puzzle, image or curator that the call names is not in the bank."""


class PuzzleExistsError(ValueError):
    """add_puzzle was given a puzzle whose id is already in the bank."""


class StatusError(ValueError):
    """A curator action that the puzzle's current status does not allow."""


@dataclass
class StoredPuzzle:
    """A puzzle as the bank holds it: the puzzle itself plus its bank record."""

    puzzle: Puzzle
    status: str
    created_at: datetime
    updated_at: datetime
    submitted_by: str | None = None
    reject_reason: str | None = None


# ---------------------------------------------------------------- images


def dialect_insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which has on_conflict_do_* (SQLite and PostgreSQL)."""
    name = session.get_bind().dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise NotImplementedError(f"the bank needs INSERT .. ON CONFLICT: SQLite or PostgreSQL, not {name!r}")
    return insert(table)


def encode(image: np.ndarray) -> tuple[str, bytes]:
    data = png_bytes(image)
    return hashlib.sha256(data).hexdigest(), data


def decode(data: bytes) -> np.ndarray:
    return to_rgb_array(data)


def store_images(session: Session, images: Iterable[np.ndarray]) -> list[str]:
    """Store images once each (content-addressed) and return their hashes in the given order.

    Rows go in sorted by hash, so two transactions storing overlapping images lock them in the same order
    and cannot deadlock on PostgreSQL.
    """
    hashes: list[str] = []
    rows: dict[str, dict[str, Any]] = {}
    for image in images:
        sha, data = encode(image)
        hashes.append(sha)
        rows.setdefault(sha, {"sha256": sha, "png": data, "width": int(image.shape[1]), "height": int(image.shape[0])})
    values = [rows[sha] for sha in sorted(rows)]
    for start in range(0, len(values), IMAGE_CHUNK):
        session.execute(
            dialect_insert(session, Image).values(values[start : start + IMAGE_CHUNK]).on_conflict_do_nothing()
        )
    return hashes


def image_refs(session: Session, images: Sequence[np.ndarray | str]) -> list[str]:
    """Images given as pixels (stored now, in one sorted batch) or as hashes of images already stored."""
    named = {image for image in images if isinstance(image, str)}
    if named:
        found = set(session.scalars(select(Image.sha256).where(Image.sha256.in_(named))))
        missing = sorted(named - found)
        if missing:
            raise NotFoundError(f"no image with sha256 {missing[0]!r} in the bank")
    arrays = [checked_image(image, "image") for image in images if not isinstance(image, str)]
    stored = iter(store_images(session, arrays))
    return [image if isinstance(image, str) else next(stored) for image in images]


def checked_image(image: Any, what: str) -> np.ndarray:
    problem = image_problem(image)
    if problem:
        raise ValueError(f"{what}: {problem}")
    return image


# ---------------------------------------------------------------- validation


def image_problem(image: Any) -> str | None:
    if not isinstance(image, np.ndarray):
        return f"expected a numpy array, got {type(image).__name__}"
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        return f"expected a uint8 RGB array (H, W, 3), got {image.dtype} {image.shape}"
    return None


def text_problem(value: Any, what: str, max_length: int, required: bool = True) -> str | None:
    """Why a string may not be stored (None: fine). Lengths match the columns, which PostgreSQL enforces."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if required and not value:
        return f"{what} must not be empty"
    if len(value) > max_length:
        return f"{what} must be at most {max_length} characters, got {len(value)}"
    if "\x00" in value:
        return f"{what} must not contain NUL characters"
    return None


def require_text(value: Any, what: str, max_length: int, required: bool = True) -> str:
    problem = text_problem(value, what, max_length, required)
    if problem:
        raise ValueError(problem)
    return value


def is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def puzzle_problems(puzzle: Puzzle) -> list[str]:
    """Everything wrong with a puzzle before it may enter the bank (empty list: fine)."""
    problems: list[str] = []
    if puzzle.family not in FAMILIES:
        problems.append(f"unknown family {puzzle.family!r}")
    if not isinstance(puzzle.id, str) or not puzzle.id or len(puzzle.id) > 64 or "\x00" in puzzle.id:
        problems.append(f"id must be 1..64 characters, got {puzzle.id!r}")
    if not puzzle.panels:
        problems.append("no panels")
    images = [("panel", i, p) for i, p in enumerate(puzzle.panels)] + [
        ("candidate", i, c) for i, c in enumerate(puzzle.candidates)
    ]
    if puzzle.answer is not None:
        images.append(("answer", 0, puzzle.answer))
    for kind, index, image in images:
        problem = image_problem(image)
        if problem:
            problems.append(f"{kind} {index}: {problem}")
    if len(puzzle.candidates) > MAX_CANDIDATES:
        problems.append(f"{len(puzzle.candidates)} candidates; a puzzle has at most {MAX_CANDIDATES}")
    if puzzle.candidates and puzzle.answer_index is None:
        problems.append("candidates given without answer_index")
    if puzzle.answer_index is not None:
        if not 0 <= puzzle.answer_index < len(puzzle.candidates):
            problems.append(f"answer_index {puzzle.answer_index} outside the {len(puzzle.candidates)} candidates")
        elif (
            puzzle.answer is not None
            and image_problem(puzzle.answer) is None
            and not np.array_equal(puzzle.candidates[puzzle.answer_index], puzzle.answer)
        ):
            problems.append(f"candidate {puzzle.answer_index} differs from the answer image")
    if not isinstance(puzzle.difficulty, int) or not 1 <= puzzle.difficulty <= 5:
        problems.append(f"difficulty must be an integer 1..5, got {puzzle.difficulty!r}")
    if not isinstance(puzzle.tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in puzzle.tags):
        problems.append(f"tags must be a list of strings of 1..64 characters, got {puzzle.tags!r}")
    title_problem = text_problem(puzzle.title, "title", MAX_TITLE_LENGTH, required=False)
    if title_problem:
        problems.append(title_problem)
    if isinstance(puzzle.tags, list) and any(isinstance(t, str) and "\x00" in t for t in puzzle.tags):
        problems.append("tags must not contain NUL characters")
    if not isinstance(puzzle.license, str) or not 0 < len(puzzle.license) <= 64:
        problems.append(f"license must be a string of 1..64 characters, got {puzzle.license!r}")
    for name in ("layout", "meta", "source"):
        value = getattr(puzzle, name)
        if not isinstance(value, dict) or not is_json(value):
            problems.append(f"{name} must be a JSON-serialisable dict")
    return problems


def require_valid(puzzle: Puzzle) -> None:
    problems = puzzle_problems(puzzle)
    if problems:
        raise ValueError(f"puzzle {puzzle.id!r} is invalid: {'; '.join(problems)}")


def require_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")


# ---------------------------------------------------------------- writing and reading puzzles


def layout_kind(layout: dict[str, Any]) -> str:
    return str(layout.get("kind", ""))[:64]


def write_puzzle(session: Session, puzzle: Puzzle, status: str, submitted_by: str | None = None) -> None:
    answer = [puzzle.answer] if puzzle.answer is not None else []
    hashes = store_images(session, [*puzzle.panels, *puzzle.candidates, *answer])  # one sorted batch
    panel_hashes = hashes[: len(puzzle.panels)]
    candidate_hashes = hashes[len(puzzle.panels) : len(puzzle.panels) + len(puzzle.candidates)]
    answer_hash = hashes[-1] if answer else None
    now = utc_now()
    session.add(
        PuzzleRow(
            id=puzzle.id,
            status=status,
            family=puzzle.family,
            title=puzzle.title,
            tags=list(puzzle.tags),
            difficulty=puzzle.difficulty,
            layout=dict(puzzle.layout),
            layout_kind=layout_kind(puzzle.layout),
            meta=dict(puzzle.meta),
            source=dict(puzzle.source),
            licence=puzzle.license,
            answer_sha256=answer_hash,
            answer_index=puzzle.answer_index,
            created_at=now,
            updated_at=now,
            submitted_by=submitted_by,
        )
    )
    session.flush()  # the puzzle row must exist before rows that refer to it
    session.add_all(PuzzlePanel(puzzle_id=puzzle.id, position=i, image_sha256=h) for i, h in enumerate(panel_hashes))
    session.add_all(
        PuzzleCandidate(puzzle_id=puzzle.id, position=i, image_sha256=h) for i, h in enumerate(candidate_hashes)
    )
    session.add_all(PuzzleTag(puzzle_id=puzzle.id, tag=tag) for tag in dict.fromkeys(puzzle.tags))
    session.flush()


def image_hashes(session: Session, table: Any, ids: Sequence[str]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {puzzle_id: [] for puzzle_id in ids}
    rows = session.execute(
        select(table.puzzle_id, table.image_sha256)
        .where(table.puzzle_id.in_(ids))
        .order_by(table.puzzle_id, table.position)
    )
    for puzzle_id, sha in rows:
        result[puzzle_id].append(sha)
    return result


def load_puzzles(session: Session, ids: Sequence[str]) -> list[StoredPuzzle]:
    """Full puzzles (pixels decoded) for `ids`, in the given order; missing ids are skipped."""
    rows = {row.id: row for row in session.scalars(select(PuzzleRow).where(PuzzleRow.id.in_(ids)))}
    panels = image_hashes(session, PuzzlePanel, list(rows))
    candidates = image_hashes(session, PuzzleCandidate, list(rows))
    needed = {h for hashes in [*panels.values(), *candidates.values()] for h in hashes}
    needed |= {row.answer_sha256 for row in rows.values() if row.answer_sha256}
    pixels = {
        sha: decode(png)
        for sha, png in session.execute(select(Image.sha256, Image.png).where(Image.sha256.in_(needed)))
    }
    stored = []
    for puzzle_id in ids:
        row = rows.get(puzzle_id)
        if row is None:
            continue
        puzzle = Puzzle(
            family=row.family,
            panels=[pixels[h] for h in panels[row.id]],
            answer=pixels[row.answer_sha256] if row.answer_sha256 else None,
            candidates=[pixels[h] for h in candidates[row.id]],
            answer_index=row.answer_index,
            title=row.title,
            layout=dict(row.layout),
            tags=list(row.tags),
            difficulty=row.difficulty,
            source=dict(row.source),
            license=row.licence,
            meta=dict(row.meta),
            id=row.id,
        )
        stored.append(
            StoredPuzzle(puzzle, row.status, row.created_at, row.updated_at, row.submitted_by, row.reject_reason)
        )
    return stored


# ---------------------------------------------------------------- the puzzle filter


@dataclass(frozen=True)
class PuzzleFilter:
    """Which puzzles a listing or an export takes (None: any): the one vocabulary of puzzle filters.

    layout matches layout["kind"]; difficulty is a level or an inclusive (low, high) range; model_wrong True
    keeps puzzles some model (or `bundle_id`) got wrong, False those it only got right.
    """

    family: str | None = None
    layout: str | None = None
    tag: str | None = None
    difficulty: int | tuple[int, int] | None = None
    status: str | None = "published"
    model_wrong: bool | None = None
    bundle_id: str | None = None

    @classmethod
    def of(cls, **criteria: Any) -> PuzzleFilter:
        """From keyword criteria; ValueError naming any that is not a filter."""
        unknown = set(criteria) - {item.name for item in fields(cls)}
        if unknown:
            raise ValueError(f"unknown puzzle filter(s): {', '.join(sorted(unknown))}")
        return cls(**criteria)

    def select(self) -> Any:
        """SELECT the puzzles this filter takes."""
        query = select(PuzzleRow)
        if self.status is not None:
            require_status(self.status)
            query = query.where(PuzzleRow.status == self.status)
        if self.family is not None:
            if self.family not in FAMILIES:
                raise ValueError(f"unknown family {self.family!r}; expected one of {', '.join(FAMILIES)}")
            query = query.where(PuzzleRow.family == self.family)
        if self.layout is not None:
            query = query.where(PuzzleRow.layout_kind == self.layout)
        if self.tag is not None:
            query = query.where(exists().where(PuzzleTag.puzzle_id == PuzzleRow.id, PuzzleTag.tag == self.tag))
        if self.difficulty is not None:
            low, high = self.difficulty if isinstance(self.difficulty, tuple) else (self.difficulty, self.difficulty)
            query = query.where(PuzzleRow.difficulty.between(low, high))
        if self.model_wrong is not None:
            results = [ModelResult.puzzle_id == PuzzleRow.id]
            if self.bundle_id:
                results.append(ModelResult.bundle_id == self.bundle_id)
            wrong = exists().where(*results, not_(ModelResult.correct))
            query = query.where(wrong) if self.model_wrong else query.where(exists().where(*results), not_(wrong))
        return query


def choose_filter(filters: PuzzleFilter | None, criteria: dict[str, Any]) -> PuzzleFilter:
    """The filter a call asks for: a PuzzleFilter, or keyword criteria as a shorthand for one."""
    if filters is not None and criteria:
        raise ValueError("give a PuzzleFilter or keyword criteria, not both")
    return filters if filters is not None else PuzzleFilter.of(**criteria)


# ---------------------------------------------------------------- curator audit


def audit(session: Session, curator: str, action: str, target: str, before: Any, after: Any) -> None:
    """Record a curator's action, in the transaction that makes the change."""
    session.add(AuditEntry(curator=curator, action=action, target=target, before=before, after=after))


def require_curator(session: Session, curator: str) -> None:
    """NotFoundError for an unknown curator, PermissionError for a disabled one."""
    row = session.execute(select(Curator.disabled).where(Curator.name == curator)).first()
    if row is None:
        raise NotFoundError(f"no curator named {curator!r}")
    if row.disabled:
        raise PermissionError(f"curator {curator!r} is disabled")
