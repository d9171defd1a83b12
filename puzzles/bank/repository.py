"""The bank's one public surface: everything the app, the commands and the tests do with the bank, as
verb-named functions.

Each function is one short transaction and returns plain values (dataclasses, dicts, `Puzzle` objects),
never ORM objects, so no session outlives a call. Curator actions write their audit entry (with the
puzzle before and after) in the same transaction as the change. The puzzles themselves (add, get, list)
live here; the other jobs each have their room, named by the imports below: curation (curator actions),
packs (import and export), visitors (ratings, attempts, statistics), accounts (curator accounts),
backup (backups and restores), store (storage rules and the puzzle filter).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from puzzles.bank.curation import (
    BULK_ACTIONS,
    EDITABLE_FIELDS,
    TRANSITIONS,
    approve,
    bulk_action,
    create_puzzles,
    edit,
    find_duplicates,
    flagged_puzzles,
    list_audit,
    merge_duplicates,
    reject,
    set_answer,
    set_status,
    unpublish,
)
from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import (
    STATUSES,
    Image,
    PuzzleCandidate,
    PuzzlePanel,
    PuzzleRow,
)
from puzzles.bank.packs import ImportReport, export_pack, import_pack, import_puzzles, seed_bank
from puzzles.bank.store import (
    MAX_VISITOR_LENGTH,
    NotFoundError,
    PuzzleExistsError,
    PuzzleFilter,
    StatusError,
    StoredPuzzle,
    choose_filter,
    image_hashes,
    load_puzzles,
    puzzle_problems,
    require_status,
    require_text,
    require_valid,
    write_puzzle,
)
from puzzles.bank.visitors import (
    Activity,
    add_attempt,
    add_rating,
    bank_stats,
    list_ratings,
    puzzle_stats,
    recent_activity,
    record_model_result,
)
from puzzles.puzzle import Puzzle

__all__ = [
    "NotFoundError",
    "PuzzleExistsError",
    "StatusError",
    "PuzzleFilter",
    "StoredPuzzle",
    "PuzzleSummary",
    "ImportReport",
    "STATUSES",
    "TRANSITIONS",
    "EDITABLE_FIELDS",
    "puzzle_problems",
    "get_image",
    "add_puzzle",
    "submit_puzzle",
    "get_puzzle",
    "list_puzzles",
    "random_puzzle",
    "add_rating",
    "list_ratings",
    "add_attempt",
    "Activity",
    "recent_activity",
    "record_model_result",
    "puzzle_stats",
    "bank_stats",
    "import_pack",
    "import_puzzles",
    "export_pack",
    "seed_bank",
    "set_status",
    "approve",
    "reject",
    "unpublish",
    "edit",
    "find_duplicates",
    "merge_duplicates",
    "list_audit",
    "BULK_ACTIONS",
    "create_puzzles",
    "set_answer",
    "bulk_action",
    "flagged_puzzles",
]

log = logging.getLogger(__name__)

MAX_PER_PAGE = 200


@dataclass
class PuzzleSummary:
    """One row of a listing: metadata and image hashes (fetch pixels with get_image)."""

    id: str
    status: str
    family: str
    title: str
    tags: list[str]
    difficulty: int
    layout: dict[str, Any]
    panel_hashes: list[str]
    answer_hash: str | None
    candidate_hashes: list[str]
    answer_index: int | None
    created_at: datetime
    submitted_by: str | None = None


# ---------------------------------------------------------------- puzzles


def get_image(bank: Bank, sha256: str) -> bytes:
    """The PNG bytes of a stored image."""
    with read_session(bank) as session:
        data = session.scalar(select(Image.png).where(Image.sha256 == sha256))
    if data is None:
        raise NotFoundError(f"no image with sha256 {sha256!r} in the bank")
    return data


def add_puzzle(bank: Bank, puzzle: Puzzle, status: str = "draft", submitted_by: str | None = None) -> str:
    """Add one puzzle (its images stored once) and return its id; PuzzleExistsError if the id is taken."""
    require_status(status)
    require_valid(puzzle)
    if submitted_by is not None:
        require_text(submitted_by, "submitted_by", MAX_VISITOR_LENGTH)
    try:
        with write_session(bank) as session:
            if session.get(PuzzleRow, puzzle.id) is not None:
                raise PuzzleExistsError(f"puzzle {puzzle.id!r} is already in the bank")
            write_puzzle(session, puzzle, status, submitted_by)
    except IntegrityError as error:  # a concurrent writer added the same id between our check and insert
        raise PuzzleExistsError(f"puzzle {puzzle.id!r} is already in the bank") from error
    log.info("added puzzle %s (%s, %s)", puzzle.id, puzzle.family, status)
    return puzzle.id


def submit_puzzle(bank: Bank, puzzle: Puzzle, visitor: str) -> str:
    """A visitor's puzzle, waiting for review (status pending). Returns its id."""
    if not visitor:
        raise ValueError("submit_puzzle needs the visitor id")
    require_text(visitor, "visitor id", MAX_VISITOR_LENGTH)
    return add_puzzle(bank, puzzle, status="pending", submitted_by=visitor)


def get_puzzle(bank: Bank, puzzle_id: str) -> StoredPuzzle:
    """One puzzle with its status; NotFoundError if absent."""
    with read_session(bank) as session:
        found = load_puzzles(session, [puzzle_id])
    if not found:
        raise NotFoundError(f"no puzzle {puzzle_id!r} in the bank")
    return found[0]


def list_puzzles(
    bank: Bank, filters: PuzzleFilter | None = None, page: int = 0, per_page: int = 24, **criteria: Any
) -> tuple[list[PuzzleSummary], int]:
    """One page of puzzles (newest first) and the total that match `filters` (a PuzzleFilter, or its fields
    as keyword criteria; published puzzles by default).
    """
    if page < 0 or not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"page must be >= 0 and per_page 1..{MAX_PER_PAGE}, got page={page}, per_page={per_page}")
    query = choose_filter(filters, criteria).select()
    with read_session(bank) as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(
            session.scalars(
                query.order_by(PuzzleRow.created_at.desc(), PuzzleRow.id).offset(page * per_page).limit(per_page)
            )
        )
        ids = [row.id for row in rows]
        panels = image_hashes(session, PuzzlePanel, ids)
        candidates = image_hashes(session, PuzzleCandidate, ids)
    items = [
        PuzzleSummary(
            id=row.id,
            status=row.status,
            family=row.family,
            title=row.title,
            tags=list(row.tags),
            difficulty=row.difficulty,
            layout=dict(row.layout),
            panel_hashes=panels[row.id],
            answer_hash=row.answer_sha256,
            candidate_hashes=candidates[row.id],
            answer_index=row.answer_index,
            created_at=row.created_at,
            submitted_by=row.submitted_by,
        )
        for row in rows
    ]
    return items, total


def random_puzzle(bank: Bank, family: str | None = None) -> StoredPuzzle | None:
    """A published puzzle picked uniformly at random (None when there is none)."""
    query = PuzzleFilter(family=family).select().with_only_columns(PuzzleRow.id).order_by(PuzzleRow.id)
    with read_session(bank) as session:
        count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        if count == 0:
            return None
        puzzle_id = session.scalar(query.offset(random.randrange(count)).limit(1))
        return load_puzzles(session, [puzzle_id])[0]


