"""Puzzle packs in and out of the bank: import (all or nothing, audited when a curator imports), export, and
seeding a bank from the starter pack shipped with the project."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import (
    PuzzleRow,
)
from puzzles.bank.store import (
    PuzzleFilter,
    audit,
    choose_filter,
    load_puzzles,
    puzzle_problems,
    require_curator,
    require_status,
    write_puzzle,
)
from puzzles.puzzle import Puzzle

log = logging.getLogger(__name__)

_PROBLEM_ID = re.compile(r"\(id '([^']*)'\)")  # how validate_pack names a puzzle in a problem


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


def export_pack(bank: Bank, path: Path | str, filters: PuzzleFilter | None = None, **criteria: Any) -> int:
    """Write the puzzles matching `filters` (as list_puzzles; published ones by default) to a pack."""
    from puzzles.pack import write_pack

    query = choose_filter(filters, criteria).select()
    query = query.with_only_columns(PuzzleRow.id).order_by(PuzzleRow.created_at, PuzzleRow.id)
    with read_session(bank) as session:
        ids = list(session.scalars(query))
        puzzles = [stored.puzzle for stored in load_puzzles(session, ids)]
    write_pack(puzzles, Path(path))
    log.info("exported %d puzzles to %s", len(puzzles), path)
    return len(puzzles)


def seed_bank(bank: Bank, pack_path: Path | str | None = None) -> ImportReport:
    """Import the starter pack (default: the shipped one) as published. Idempotent: puzzles already in the bank
    are left alone."""
    from puzzles.starter import DEFAULT_OUT

    pack_path = Path(pack_path or DEFAULT_OUT)
    if not pack_path.exists():
        raise FileNotFoundError(f"starter pack not found at {pack_path}")
    report = import_pack(bank, pack_path, status="published")
    if report.invalid:
        raise ValueError(f"starter pack {pack_path} has invalid puzzles, nothing imported: {report.invalid[:5]}")
    log.info("seeded bank from %s: %d new, %d already there", pack_path, len(report.new), len(report.duplicate))
    return report
