"""Curator actions on puzzles: status changes, edits, merging duplicates. Each writes an audit entry
(the puzzle before and after) in the same transaction as the change. Re-exported by repository.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import (
    Attempt,
    AuditEntry,
    Curator,
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
    StatusError,
    image_hashes,
    layout_kind,
    puzzle_problems,
    require_status,
)
from puzzles.puzzle import Puzzle

log = logging.getLogger(__name__)

# Which status a curator may move a puzzle to from each status.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"pending", "published", "rejected"}),
    "pending": frozenset({"draft", "published", "rejected"}),
    "published": frozenset({"draft", "rejected"}),
    "rejected": frozenset({"draft", "pending", "published"}),
}
EDITABLE_FIELDS = ("title", "tags", "difficulty", "layout", "meta", "source", "license")


def _snapshot(row: PuzzleRow) -> dict[str, Any]:
    """The audited view of a puzzle: its record without pixels."""
    return {
        "status": row.status,
        "family": row.family,
        "title": row.title,
        "tags": list(row.tags),
        "difficulty": row.difficulty,
        "layout": dict(row.layout),
        "meta": dict(row.meta),
        "source": dict(row.source),
        "license": row.licence,
        "reject_reason": row.reject_reason,
    }


def _audit(session: Session, curator: str, action: str, target: str, before: Any, after: Any) -> None:
    session.add(AuditEntry(curator=curator, action=action, target=target, before=before, after=after))


def _require_curator(session: Session, curator: str) -> None:
    row = session.execute(select(Curator.disabled).where(Curator.name == curator)).first()
    if row is None:
        raise NotFoundError(f"no curator named {curator!r}")
    if row.disabled:
        raise PermissionError(f"curator {curator!r} is disabled")


def _locked_puzzle(session: Session, puzzle_id: str) -> PuzzleRow:
    row = session.scalar(select(PuzzleRow).where(PuzzleRow.id == puzzle_id).with_for_update())
    if row is None:
        raise NotFoundError(f"no puzzle {puzzle_id!r} in the bank")
    return row


def set_status(bank: Bank, puzzle_id: str, status: str, curator: str, reason: str | None = None) -> dict[str, Any]:
    """Move a puzzle to `status` (see TRANSITIONS), audited. Returns the puzzle's record after the change."""
    require_status(status)
    with write_session(bank) as session:
        _require_curator(session, curator)
        row = _locked_puzzle(session, puzzle_id)
        if status not in TRANSITIONS[row.status]:
            raise StatusError(f"puzzle {puzzle_id!r} is {row.status}; it cannot become {status}")
        before = _snapshot(row)
        row.status = status
        row.reject_reason = reason if status == "rejected" else None
        row.updated_at = utc_now()
        after = _snapshot(row)
        _audit(session, curator, f"status:{status}", puzzle_id, before, after)
    log.info("curator %s set puzzle %s to %s", curator, puzzle_id, status)
    return after


def approve(bank: Bank, puzzle_id: str, curator: str) -> dict[str, Any]:
    """Publish a draft, pending or rejected puzzle."""
    return set_status(bank, puzzle_id, "published", curator)


def reject(bank: Bank, puzzle_id: str, curator: str, reason: str) -> dict[str, Any]:
    """Reject a puzzle, saying why (the reason is kept with the puzzle and in the audit log)."""
    if not reason or not reason.strip():
        raise ValueError("reject needs a reason")
    return set_status(bank, puzzle_id, "rejected", curator, reason=reason.strip())


def unpublish(bank: Bank, puzzle_id: str, curator: str) -> dict[str, Any]:
    """Take a published puzzle back to draft."""
    return set_status(bank, puzzle_id, "draft", curator)


def edit(bank: Bank, puzzle_id: str, curator: str, **changes: Any) -> dict[str, Any]:
    """Change a puzzle's metadata (title, tags, difficulty, layout, meta, source, license), audited."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"cannot edit {', '.join(sorted(unknown))}; editable: {', '.join(EDITABLE_FIELDS)}")
    if not changes:
        raise ValueError("edit needs at least one change")
    with write_session(bank) as session:
        _require_curator(session, curator)
        row = _locked_puzzle(session, puzzle_id)
        before = _snapshot(row)
        probe = Puzzle(
            family=row.family,
            panels=[np.zeros((1, 1, 3), np.uint8)],
            id=row.id,
            **{
                "title": changes.get("title", row.title),
                "tags": changes.get("tags", list(row.tags)),
                "difficulty": changes.get("difficulty", row.difficulty),
                "layout": changes.get("layout", row.layout),
                "meta": changes.get("meta", row.meta),
                "source": changes.get("source", row.source),
                "license": changes.get("license", row.licence),
            },
        )
        problems = puzzle_problems(probe)
        if problems:
            raise ValueError(f"edit of puzzle {puzzle_id!r} rejected: {'; '.join(problems)}")
        row.title, row.tags, row.difficulty = probe.title, list(probe.tags), probe.difficulty
        row.layout, row.layout_kind = dict(probe.layout), layout_kind(probe.layout)
        row.meta, row.source, row.licence = dict(probe.meta), dict(probe.source), probe.license
        row.updated_at = utc_now()
        if "tags" in changes:
            session.execute(delete(PuzzleTag).where(PuzzleTag.puzzle_id == puzzle_id))
            session.add_all(PuzzleTag(puzzle_id=puzzle_id, tag=tag) for tag in dict.fromkeys(probe.tags))
        after = _snapshot(row)
        _audit(session, curator, "edit", puzzle_id, before, after)
    return after


def _content_key(family: str, panels: list[str], answer: str | None, candidates: list[str]) -> str:
    return "|".join([family, ",".join(panels), answer or "", ",".join(candidates)])


def find_duplicates(bank: Bank) -> list[list[str]]:
    """Groups of puzzle ids with identical content (family and every image), oldest first in each group."""
    with read_session(bank) as session:
        rows = session.execute(
            select(PuzzleRow.id, PuzzleRow.family, PuzzleRow.answer_sha256).order_by(PuzzleRow.created_at, PuzzleRow.id)
        ).all()
        ids = [row.id for row in rows]
        panels = image_hashes(session, PuzzlePanel, ids)
        candidates = image_hashes(session, PuzzleCandidate, ids)
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(_content_key(row.family, panels[row.id], row.answer_sha256, candidates[row.id]), []).append(
            row.id
        )
    return [group for group in groups.values() if len(group) > 1]


def merge_duplicates(bank: Bank, keep_id: str, duplicate_ids: Sequence[str], curator: str) -> dict[str, int]:
    """Fold duplicates into `keep_id`: their attempts, ratings and model results move over, then they go.

    Where a visitor rated the same output on both, the kept puzzle's rating wins. Audited per duplicate.
    """
    duplicate_ids = [d for d in dict.fromkeys(duplicate_ids) if d != keep_id]
    if not duplicate_ids:
        raise ValueError("merge_duplicates needs at least one duplicate id other than the kept one")
    moved = {"attempts": 0, "ratings": 0, "model_results": 0, "removed": 0}
    with write_session(bank) as session:
        _require_curator(session, curator)
        _locked_puzzle(session, keep_id)
        for duplicate_id in duplicate_ids:
            row = _locked_puzzle(session, duplicate_id)
            before = _snapshot(row)
            moved["attempts"] += session.execute(
                update(Attempt).where(Attempt.puzzle_id == duplicate_id).values(puzzle_id=keep_id)
            ).rowcount
            kept = Rating.__table__.alias("kept")
            session.execute(
                delete(Rating).where(
                    Rating.puzzle_id == duplicate_id,
                    exists().where(
                        kept.c.puzzle_id == keep_id,
                        kept.c.visitor_id == Rating.visitor_id,
                        kept.c.output_sha256 == Rating.output_sha256,
                    ),
                )
            )
            moved["ratings"] += session.execute(
                update(Rating)
                .where(Rating.puzzle_id == duplicate_id)
                .values(puzzle_id=keep_id, target=f"puzzle:{keep_id}")
            ).rowcount
            kept_bundles = select(ModelResult.bundle_id).where(ModelResult.puzzle_id == keep_id)
            session.execute(
                delete(ModelResult).where(
                    ModelResult.puzzle_id == duplicate_id, ModelResult.bundle_id.in_(kept_bundles)
                )
            )
            moved["model_results"] += session.execute(
                update(ModelResult).where(ModelResult.puzzle_id == duplicate_id).values(puzzle_id=keep_id)
            ).rowcount
            session.delete(row)
            session.flush()
            moved["removed"] += 1
            _audit(session, curator, "merge", duplicate_id, before, {"merged_into": keep_id})
    return moved


def list_audit(
    bank: Bank, target: str | None = None, curator: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Audit entries, newest first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if curator is not None:
        query = query.where(AuditEntry.curator == curator)
    with read_session(bank) as session:
        return [
            {
                "curator": e.curator,
                "action": e.action,
                "target": e.target,
                "before": e.before,
                "after": e.after,
                "at": e.at,
            }
            for e in session.scalars(query)
        ]
