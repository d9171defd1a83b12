"""Everything the app does with the bank, as verb-named functions.

Each function is one short transaction and returns plain values (dataclasses, dicts, `Puzzle` objects),
never ORM objects, so no session outlives a call. Curator actions write their audit entry (with the
puzzle before and after) in the same transaction as the change.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Integer, exists, func, not_, select
from sqlalchemy.exc import IntegrityError

from puzzles.bank.curation import (
    BULK_ACTIONS,
    EDITABLE_FIELDS,
    TRANSITIONS,
    approve,
    bulk_action,
    create_puzzles,
    curator_fingerprint,
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
from puzzles.bank.curation import _audit as audit
from puzzles.bank.curation import _require_curator as require_curator
from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import (
    STATUSES,
    Attempt,
    Curator,
    Image,
    ModelResult,
    PuzzleCandidate,
    PuzzlePanel,
    PuzzleRow,
    PuzzleTag,
    Rating,
    utc_now,
)
from puzzles.bank.store import (
    NotFoundError,
    PuzzleExistsError,
    StatusError,
    StoredPuzzle,
    dialect_insert,
    image_hashes,
    image_refs,
    is_json,
    load_puzzles,
    puzzle_problems,
    require_status,
    require_text,
    require_valid,
    write_puzzle,
)
from puzzles.puzzle import FAMILIES, Puzzle

__all__ = [
    "NotFoundError",
    "PuzzleExistsError",
    "StatusError",
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
    "curator_fingerprint",
]

log = logging.getLogger(__name__)

_PROBLEM_ID = re.compile(r"\(id '([^']*)'\)")  # how validate_pack names a puzzle in a problem

MAX_PER_PAGE = 200
MAX_VISITOR_LENGTH = 128  # the visitor_id / submitted_by columns
MAX_BUNDLE_LENGTH = 128  # the bundle_id columns


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


@dataclass
class ImportReport:
    """What import_pack found: ids that are new, ids already in the bank, and (id, why) for invalid ones."""

    new: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False
    imported: bool = False  # True only when the new puzzles were written

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _filtered(
    family: str | None = None,
    layout: str | None = None,
    tag: str | None = None,
    difficulty: int | tuple[int, int] | None = None,
    status: str | None = "published",
    model_wrong: bool | None = None,
    bundle_id: str | None = None,
) -> Any:
    """SELECT puzzles matching the listing filters (None means "any")."""
    query = select(PuzzleRow)
    if status is not None:
        require_status(status)
        query = query.where(PuzzleRow.status == status)
    if family is not None:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
        query = query.where(PuzzleRow.family == family)
    if layout is not None:
        query = query.where(PuzzleRow.layout_kind == layout)
    if tag is not None:
        query = query.where(exists().where(PuzzleTag.puzzle_id == PuzzleRow.id, PuzzleTag.tag == tag))
    if difficulty is not None:
        low, high = difficulty if isinstance(difficulty, tuple) else (difficulty, difficulty)
        query = query.where(PuzzleRow.difficulty.between(low, high))
    if model_wrong is not None:
        results = [ModelResult.puzzle_id == PuzzleRow.id] + ([ModelResult.bundle_id == bundle_id] if bundle_id else [])
        wrong = exists().where(*results, not_(ModelResult.correct))
        query = query.where(wrong) if model_wrong else query.where(exists().where(*results), not_(wrong))
    return query


def list_puzzles(
    bank: Bank,
    family: str | None = None,
    layout: str | None = None,
    tag: str | None = None,
    difficulty: int | tuple[int, int] | None = None,
    status: str | None = "published",
    model_wrong: bool | None = None,
    bundle_id: str | None = None,
    page: int = 0,
    per_page: int = 24,
) -> tuple[list[PuzzleSummary], int]:
    """One page of puzzles (newest first) and the total that match.

    layout matches layout["kind"]; difficulty is a level or an inclusive (low, high) range; model_wrong
    True keeps puzzles some model (or `bundle_id`) got wrong, False those it only got right; status None
    means any status.
    """
    if page < 0 or not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"page must be >= 0 and per_page 1..{MAX_PER_PAGE}, got page={page}, per_page={per_page}")
    query = _filtered(family, layout, tag, difficulty, status, model_wrong, bundle_id)
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
    query = _filtered(family=family).with_only_columns(PuzzleRow.id).order_by(PuzzleRow.id)
    with read_session(bank) as session:
        count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        if count == 0:
            return None
        puzzle_id = session.scalar(query.offset(random.randrange(count)).limit(1))
        return load_puzzles(session, [puzzle_id])[0]


# ---------------------------------------------------------------- visitors: ratings, attempts, model results


def _prompt_target(prompt_hashes: list[str]) -> str:
    return "prompt:" + hashlib.sha256(",".join(prompt_hashes).encode()).hexdigest()


def add_rating(
    bank: Bank,
    *,
    visitor: str,
    output: np.ndarray | str,
    score: int,
    puzzle_id: str | None = None,
    prompt: Sequence[np.ndarray | str] | None = None,
    bundle_id: str = "",
    settings: dict[str, Any] | None = None,
    sample_index: int = 0,
    is_correct: bool | None = None,
) -> int:
    """Record (or update) a visitor's thumbs up (+1) / down (-1) / neutral (0) on a model output.

    The output is rated either for a bank puzzle (`puzzle_id`) or for a free prompt (`prompt`: images or
    hashes of stored images). One row per (visitor, output, puzzle or prompt): rating again updates it,
    atomically. Returns the rating's id.
    """
    if score not in (-1, 0, 1):
        raise ValueError(f"score must be -1, 0 or +1, got {score!r}")
    if not visitor:
        raise ValueError("add_rating needs the visitor id")
    require_text(visitor, "visitor id", MAX_VISITOR_LENGTH)
    require_text(bundle_id, "bundle id", MAX_BUNDLE_LENGTH, required=False)
    if (puzzle_id is None) == (prompt is None):
        raise ValueError("add_rating needs exactly one of puzzle_id or prompt")
    if settings is not None and not is_json(settings):
        raise ValueError("sampling settings must be JSON-serialisable")
    try:
        with write_session(bank) as session:
            if prompt is not None and not len(prompt):
                raise ValueError("a free prompt needs at least one image")
            # One batch for the output and the prompt: images are locked in one order (no deadlocks).
            output_hash, *prompt_list = image_refs(session, [output, *(prompt if prompt is not None else [])])
            prompt_hashes = prompt_list if prompt is not None else None
            target = f"puzzle:{puzzle_id}" if puzzle_id is not None else _prompt_target(prompt_hashes or [])
            now = utc_now()
            values = {
                "puzzle_id": puzzle_id,
                "prompt_hashes": prompt_hashes,
                "target": target,
                "bundle_id": bundle_id,
                "settings": settings or {},
                "output_sha256": output_hash,
                "sample_index": sample_index,
                "score": score,
                "is_correct": is_correct,
                "visitor_id": visitor,
                "created_at": now,
                "updated_at": now,
            }
            statement = dialect_insert(session, Rating).values(**values)
            statement = statement.on_conflict_do_update(
                index_elements=[Rating.visitor_id, Rating.output_sha256, Rating.target],
                set_={
                    name: statement.excluded[name]
                    for name in ("score", "is_correct", "bundle_id", "settings", "sample_index", "updated_at")
                },
            ).returning(Rating.id)
            return int(session.execute(statement).scalar_one())
    except IntegrityError as error:
        raise NotFoundError(f"cannot rate for puzzle {puzzle_id!r}: it is not in the bank") from error


def list_ratings(
    bank: Bank, puzzle_id: str | None = None, visitor: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Ratings (newest first), optionally for one puzzle and/or one visitor."""
    query = select(Rating).order_by(Rating.updated_at.desc(), Rating.id.desc()).limit(limit)
    if puzzle_id is not None:
        query = query.where(Rating.puzzle_id == puzzle_id)
    if visitor is not None:
        query = query.where(Rating.visitor_id == visitor)
    columns = [c.key for c in Rating.__table__.columns]
    with read_session(bank) as session:
        return [{name: getattr(row, name) for name in columns} for row in session.scalars(query)]


def add_attempt(
    bank: Bank,
    puzzle_id: str,
    visitor: str,
    choice: int | None,
    seconds: float | None = None,
    correct: bool | None = None,
) -> bool:
    """Record a visitor's answer (choice None: gave up) and return whether it was right.

    Correctness comes from the puzzle's answer_index unless `correct` is given (puzzles without candidates).
    """
    if not visitor:
        raise ValueError("add_attempt needs the visitor id")
    require_text(visitor, "visitor id", MAX_VISITOR_LENGTH)
    if seconds is not None and seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    with write_session(bank) as session:
        row = session.execute(
            select(PuzzleRow.answer_index, func.count(PuzzleCandidate.position))
            .outerjoin(PuzzleCandidate, PuzzleCandidate.puzzle_id == PuzzleRow.id)
            .where(PuzzleRow.id == puzzle_id)
            .group_by(PuzzleRow.id, PuzzleRow.answer_index)
        ).first()
        if row is None:
            raise NotFoundError(f"no puzzle {puzzle_id!r} in the bank")
        answer_index, n_candidates = row
        if choice is not None and n_candidates and not 0 <= choice < n_candidates:
            raise ValueError(f"choice {choice} outside the {n_candidates} candidates of puzzle {puzzle_id!r}")
        if correct is None:
            if choice is not None and answer_index is None:
                raise ValueError(f"puzzle {puzzle_id!r} has no answer_index: pass correct= explicitly")
            correct = choice is not None and choice == answer_index
        session.add(
            Attempt(puzzle_id=puzzle_id, visitor_id=visitor, choice=choice, correct=bool(correct), seconds=seconds)
        )
    return bool(correct)


@dataclass(frozen=True)
class Activity:
    """A visitor's writes of one kind in a recent window: how many, and when the earliest of them was."""

    count: int
    oldest: datetime | None


# What a visitor writes, and the time that dates each write: a rating updated later counts from its update.
_ACTIVITY_TIMES = {
    "ratings": (Rating.visitor_id, Rating.updated_at),
    "attempts": (Attempt.visitor_id, Attempt.created_at),
}


def recent_activity(bank: Bank, visitor: str, what: str, seconds: float, now: datetime | None = None) -> Activity:
    """The visitor's ratings or attempts (`what`) made or updated in the `seconds` before `now` (default: now).

    Counted from the tables themselves, so every process sharing the bank sees the same figure.
    """
    if what not in _ACTIVITY_TIMES:
        raise ValueError(f"unknown activity {what!r}; choose from {', '.join(_ACTIVITY_TIMES)}")
    if seconds <= 0:
        raise ValueError(f"the window must be positive, got {seconds} s")
    visitor_column, time_column = _ACTIVITY_TIMES[what]
    since = (now or utc_now()) - timedelta(seconds=seconds)
    query = select(func.count(), func.min(time_column)).where(visitor_column == visitor, time_column > since)
    with read_session(bank) as session:
        count, oldest = session.execute(query).one()
    return Activity(int(count), oldest)


def record_model_result(
    bank: Bank, puzzle_id: str, bundle_id: str, picked_index: int | None, correct: bool | None = None
) -> bool:
    """Remember which candidate a model bundle picked (one row per puzzle and bundle; the latest wins)."""
    if not bundle_id:
        raise ValueError("record_model_result needs the bundle id")
    require_text(bundle_id, "bundle id", MAX_BUNDLE_LENGTH)
    with write_session(bank) as session:
        found = session.execute(select(PuzzleRow.answer_index).where(PuzzleRow.id == puzzle_id)).first()
        if found is None:
            raise NotFoundError(f"no puzzle {puzzle_id!r} in the bank")
        answer_index = found.answer_index
        if correct is None:
            if answer_index is None:
                raise ValueError(f"puzzle {puzzle_id!r} has no answer_index: pass correct= explicitly")
            correct = picked_index == answer_index
        values = {
            "puzzle_id": puzzle_id,
            "bundle_id": bundle_id,
            "picked_index": picked_index,
            "correct": bool(correct),
            "updated_at": utc_now(),
        }
        statement = dialect_insert(session, ModelResult).values(**values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[ModelResult.puzzle_id, ModelResult.bundle_id],
                set_={name: statement.excluded[name] for name in ("picked_index", "correct", "updated_at")},
            )
        )
    return bool(correct)


# ---------------------------------------------------------------- statistics


def puzzle_stats(bank: Bank, puzzle_id: str) -> dict[str, Any]:
    """Human attempts and success rate, ratings summary and model results for one puzzle."""
    with read_session(bank) as session:
        if session.get(PuzzleRow, puzzle_id) is None:
            raise NotFoundError(f"no puzzle {puzzle_id!r} in the bank")
        attempts, solved, gave_up, mean_seconds = session.execute(
            select(
                func.count(Attempt.id),
                func.coalesce(func.sum(func.cast(Attempt.correct, Integer)), 0),
                func.coalesce(func.sum(func.cast(Attempt.choice.is_(None), Integer)), 0),
                func.avg(Attempt.seconds),
            ).where(Attempt.puzzle_id == puzzle_id)
        ).one()
        scores = dict(
            session.execute(
                select(Rating.score, func.count()).where(Rating.puzzle_id == puzzle_id).group_by(Rating.score)
            ).all()
        )
        models = [
            {"bundle_id": b, "picked_index": p, "correct": c}
            for b, p, c in session.execute(
                select(ModelResult.bundle_id, ModelResult.picked_index, ModelResult.correct)
                .where(ModelResult.puzzle_id == puzzle_id)
                .order_by(ModelResult.bundle_id)
            )
        ]
    return {
        "id": puzzle_id,
        "attempts": attempts,
        "solved": int(solved),
        "gave_up": int(gave_up),
        "success_rate": int(solved) / attempts if attempts else None,
        "mean_seconds": float(mean_seconds) if mean_seconds is not None else None,
        "ratings": {
            "up": scores.get(1, 0),
            "down": scores.get(-1, 0),
            "neutral": scores.get(0, 0),
            "total": sum(scores.values()),
        },
        "model_results": models,
    }


def bank_stats(bank: Bank) -> dict[str, Any]:
    """Counts across the bank: puzzles per status and (published) per family, images, ratings, attempts."""
    with read_session(bank) as session:
        by_status = dict(session.execute(select(PuzzleRow.status, func.count()).group_by(PuzzleRow.status)).all())
        by_family = dict(
            session.execute(
                select(PuzzleRow.family, func.count()).where(PuzzleRow.status == "published").group_by(PuzzleRow.family)
            ).all()
        )
        counts = {
            name: session.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (("images", Image), ("ratings", Rating), ("attempts", Attempt), ("curators", Curator))
        }
        solved = session.scalar(select(func.count()).select_from(Attempt).where(Attempt.correct)) or 0
    return {
        "puzzles": {status: by_status.get(status, 0) for status in STATUSES},
        "published_by_family": {family: by_family.get(family, 0) for family in FAMILIES},
        **counts,
        "human_success_rate": solved / counts["attempts"] if counts["attempts"] else None,
    }


# ---------------------------------------------------------------- packs


def _pack_level_problems(path: Path) -> list[tuple[str, str]]:
    """validate_pack's findings as (puzzle id, why); problems not tied to one puzzle name the pack path."""
    from puzzles.pack import validate_pack

    try:
        found = validate_pack(path)
    except (ValueError, OSError) as error:
        return [(str(path), str(error))]
    problems = []
    for problem in found:
        match = _PROBLEM_ID.search(problem)
        problems.append((match.group(1) if match else str(path), problem))
    return problems


def import_pack(
    bank: Bank, path: Path | str, dry_run: bool = False, status: str = "published", curator: str | None = None
) -> ImportReport:
    """Import a puzzle pack, all or nothing: if any puzzle is invalid, nothing is written.

    Puzzles whose id is already in the bank are reported as duplicates and left as they are. With a
    `curator`, the import is audited.
    """
    from puzzles.pack import read_pack

    require_status(status)
    path = Path(path)
    problems = _pack_level_problems(path)
    if problems:
        return ImportReport(dry_run=dry_run, invalid=problems)
    try:
        puzzles = read_pack(path)
    except (ValueError, OSError, KeyError) as error:
        return ImportReport(dry_run=dry_run, invalid=[(str(path), f"cannot read pack: {error}")])
    return import_puzzles(bank, puzzles, dry_run=dry_run, status=status, curator=curator, source=str(path))


def import_puzzles(
    bank: Bank,
    puzzles: Sequence[Puzzle],
    dry_run: bool = False,
    status: str = "published",
    curator: str | None = None,
    source: str = "",
    invalid: Sequence[tuple[str, str]] = (),
) -> ImportReport:
    """Import puzzles (from a pack or an importer), all or nothing, as one transaction.

    `invalid` carries problems found before (files an importer could not read): any problem at all means
    nothing is written. With a `curator`, the import is audited as one "import" entry naming the new ids.
    """
    require_status(status)
    report = ImportReport(dry_run=dry_run, invalid=list(invalid))
    seen: dict[str, Puzzle] = {}
    for puzzle in puzzles:
        problems = puzzle_problems(puzzle)
        if problems:
            report.invalid.append((puzzle.id, "; ".join(problems)))
        elif puzzle.id in seen and puzzle.content_id() != seen[puzzle.id].content_id():
            report.invalid.append((puzzle.id, "two different puzzles in the pack share this id"))
        seen.setdefault(puzzle.id, puzzle)
    session_scope = read_session if (dry_run or report.invalid) else write_session
    with session_scope(bank) as session:
        if curator is not None and session_scope is write_session:
            require_curator(session, curator)
        existing = set(session.scalars(select(PuzzleRow.id).where(PuzzleRow.id.in_(list(seen)))))
        for puzzle_id in seen:
            (report.duplicate if puzzle_id in existing else report.new).append(puzzle_id)
        if session_scope is write_session:
            for puzzle_id in report.new:
                write_puzzle(session, seen[puzzle_id], status)
            if curator is not None:
                after = {"new": report.new, "duplicate": len(report.duplicate), "status": status}
                audit(session, curator, "import", f"import:{source}"[:128], None, after)
            report.imported = True
    log.info(
        "import %s: %d new, %d duplicate, %d invalid%s",
        source or "(puzzles)",
        len(report.new),
        len(report.duplicate),
        len(report.invalid),
        " (dry run)" if dry_run else "",
    )
    return report


def export_pack(bank: Bank, path: Path | str, **filters: Any) -> int:
    """Write the puzzles matching `filters` (as list_puzzles; status "published" by default) to a pack."""
    from puzzles.pack import write_pack

    unknown = set(filters) - {"family", "layout", "tag", "difficulty", "status", "model_wrong", "bundle_id"}
    if unknown:
        raise ValueError(f"unknown export filter(s): {', '.join(sorted(unknown))}")
    query = _filtered(**filters).with_only_columns(PuzzleRow.id).order_by(PuzzleRow.created_at, PuzzleRow.id)
    with read_session(bank) as session:
        ids = list(session.scalars(query))
        puzzles = [stored.puzzle for stored in load_puzzles(session, ids)]
    write_pack(puzzles, Path(path))
    log.info("exported %d puzzles to %s", len(puzzles), path)
    return len(puzzles)
