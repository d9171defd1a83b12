"""Curator actions on puzzles: status changes, edits, merging duplicates. Each writes an audit entry
(the puzzle before and after) in the same transaction as the change. Reached through repository.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Integer, case, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import (
    Attempt,
    AuditEntry,
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
    audit,
    checked_image,
    image_hashes,
    layout_kind,
    puzzle_problems,
    require_curator,
    require_status,
    require_valid,
    store_images,
    write_puzzle,
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


def _locked_puzzle(session: Session, puzzle_id: str) -> PuzzleRow:
    row = session.scalar(select(PuzzleRow).where(PuzzleRow.id == puzzle_id).with_for_update())
    if row is None:
        raise NotFoundError(f"no puzzle {puzzle_id!r} in the bank")
    return row


def set_status(bank: Bank, puzzle_id: str, status: str, curator: str, reason: str | None = None) -> dict[str, Any]:
    """Move a puzzle to `status` (see TRANSITIONS), audited. Returns the puzzle's record after the change."""
    require_status(status)
    with write_session(bank) as session:
        require_curator(session, curator)
        row = _locked_puzzle(session, puzzle_id)
        if status not in TRANSITIONS[row.status]:
            raise StatusError(f"puzzle {puzzle_id!r} is {row.status}; it cannot become {status}")
        before = _snapshot(row)
        row.status = status
        row.reject_reason = reason if status == "rejected" else None
        row.updated_at = utc_now()
        after = _snapshot(row)
        audit(session, curator, f"status:{status}", puzzle_id, before, after)
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
        require_curator(session, curator)
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
        audit(session, curator, "edit", puzzle_id, before, after)
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
        require_curator(session, curator)
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
            audit(session, curator, "merge", duplicate_id, before, {"merged_into": keep_id})
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


# ---------------------------------------------------------------- curator tools: drafts, answers, bulk, review


def create_puzzles(
    bank: Bank, puzzles: Sequence[Puzzle], curator: str, status: str = "draft"
) -> dict[str, list[str]]:
    """Add puzzles a curator made (generated drafts) in one transaction, each audited as "create".

    Puzzles whose id is already in the bank are skipped and reported as duplicates. All or nothing: an
    invalid puzzle raises ValueError and nothing is written.
    """
    require_status(status)
    for puzzle in puzzles:
        require_valid(puzzle)
    result: dict[str, list[str]] = {"added": [], "duplicate": []}
    with write_session(bank) as session:
        require_curator(session, curator)
        existing = set(session.scalars(select(PuzzleRow.id).where(PuzzleRow.id.in_([p.id for p in puzzles]))))
        for puzzle in puzzles:
            if puzzle.id in existing or puzzle.id in result["added"]:
                result["duplicate"].append(puzzle.id)
                continue
            write_puzzle(session, puzzle, status, submitted_by=curator)
            row = session.get(PuzzleRow, puzzle.id)
            audit(session, curator, "create", puzzle.id, None, _snapshot(row))
            result["added"].append(puzzle.id)
    log.info("curator %s added %d %s puzzles", curator, len(result["added"]), status)
    return result


def set_answer(
    bank: Bank,
    puzzle_id: str,
    curator: str,
    answer_index: int | None = None,
    candidates: Sequence[np.ndarray] | None = None,
    answer: np.ndarray | None = None,
) -> dict[str, Any]:
    """Change a puzzle's answer: which candidate is right, the candidate images, or the answer image.

    When candidates exist the answer image follows the chosen candidate. Audited with the image hashes
    before and after.
    """
    if answer_index is None and candidates is None and answer is None:
        raise ValueError("set_answer needs answer_index, candidates or answer")
    with write_session(bank) as session:
        require_curator(session, curator)
        row = _locked_puzzle(session, puzzle_id)
        old_candidates = image_hashes(session, PuzzleCandidate, [puzzle_id])[puzzle_id]
        before = {"answer_sha256": row.answer_sha256, "answer_index": row.answer_index, "candidates": old_candidates}
        hashes = old_candidates
        if candidates is not None:
            images = [checked_image(image, f"candidate {i}") for i, image in enumerate(candidates)]
            hashes = store_images(session, images)
            session.execute(delete(PuzzleCandidate).where(PuzzleCandidate.puzzle_id == puzzle_id))
            session.add_all(
                PuzzleCandidate(puzzle_id=puzzle_id, position=i, image_sha256=h) for i, h in enumerate(hashes)
            )
        index = answer_index if answer_index is not None else row.answer_index
        if hashes:
            if index is None or not 0 <= index < len(hashes):
                raise ValueError(f"answer index {index} is outside the {len(hashes)} candidates of {puzzle_id!r}")
            if answer is not None:
                raise ValueError("a puzzle with candidates takes its answer from them: give answer_index instead")
            row.answer_index, row.answer_sha256 = index, hashes[index]
        else:
            if answer_index is not None:
                raise ValueError(f"puzzle {puzzle_id!r} has no candidates, so it has no answer index")
            if answer is not None:
                row.answer_sha256 = store_images(session, [checked_image(answer, "answer")])[0]
        row.updated_at = utc_now()
        after = {"answer_sha256": row.answer_sha256, "answer_index": row.answer_index, "candidates": hashes}
        audit(session, curator, "answer", puzzle_id, before, after)
    return after


BULK_ACTIONS = ("approve", "reject", "unpublish", "to_draft", "difficulty")


def bulk_action(
    bank: Bank, action: str, puzzle_ids: Sequence[str], curator: str, reason: str = "", difficulty: int | None = None
) -> dict[str, Any]:
    """Apply one action to many puzzles, each in its own audited transaction.

    Returns {"done": [ids], "failed": [(id, why)]}: one puzzle that cannot take the action does not stop
    the others (a published puzzle cannot be approved again, for instance).
    """
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}; expected one of {', '.join(BULK_ACTIONS)}")
    if not puzzle_ids:
        raise ValueError("select at least one puzzle")
    if action == "reject" and not (reason or "").strip():
        raise ValueError("reject needs a reason")
    if action == "difficulty" and difficulty is None:
        raise ValueError("the difficulty action needs a difficulty")
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    for puzzle_id in dict.fromkeys(puzzle_ids):
        try:
            if action == "approve":
                approve(bank, puzzle_id, curator)
            elif action == "reject":
                reject(bank, puzzle_id, curator, reason)
            elif action == "unpublish":
                unpublish(bank, puzzle_id, curator)
            elif action == "to_draft":
                set_status(bank, puzzle_id, "draft", curator)
            else:
                edit(bank, puzzle_id, curator, difficulty=difficulty)
            done.append(puzzle_id)
        except PermissionError:
            raise
        except (ValueError, LookupError) as error:
            failed.append((puzzle_id, str(error)))
    return {"done": done, "failed": failed}


def flagged_puzzles(bank: Bank, limit: int = 100) -> list[dict[str, Any]]:
    """Puzzles visitors rated down or some model answered wrongly, worst first, with the counts why."""
    down = func.coalesce(func.sum(case((Rating.score < 0, 1), else_=0)), 0)
    up = func.coalesce(func.sum(case((Rating.score > 0, 1), else_=0)), 0)
    wrong_output = func.coalesce(func.sum(case((Rating.is_correct.is_(False), 1), else_=0)), 0)
    ratings = (
        select(Rating.puzzle_id.label("pid"), down.label("down"), up.label("up"), wrong_output.label("wrong_output"))
        .where(Rating.puzzle_id.is_not(None))
        .group_by(Rating.puzzle_id)
        .subquery()
    )
    wrong_models = (
        select(ModelResult.puzzle_id.label("pid"), func.count().label("wrong"))
        .where(ModelResult.correct.is_(False))
        .group_by(ModelResult.puzzle_id)
        .subquery()
    )
    down_c = func.coalesce(ratings.c.down, 0)
    wrong_c = func.coalesce(wrong_models.c.wrong, 0)
    wrong_output_c = func.coalesce(ratings.c.wrong_output, 0)
    query = (
        select(
            PuzzleRow.id,
            PuzzleRow.status,
            PuzzleRow.family,
            PuzzleRow.title,
            down_c.label("down"),
            func.coalesce(ratings.c.up, 0).label("up"),
            wrong_output_c.label("wrong_outputs"),
            wrong_c.label("models_wrong"),
        )
        .outerjoin(ratings, ratings.c.pid == PuzzleRow.id)
        .outerjoin(wrong_models, wrong_models.c.pid == PuzzleRow.id)
        .where(or_(down_c > func.coalesce(ratings.c.up, 0), wrong_c > 0, wrong_output_c > 0))
        .where(PuzzleRow.status != "rejected")
        .order_by((down_c + wrong_c + wrong_output_c).cast(Integer).desc(), PuzzleRow.id)
        .limit(limit)
    )
    with read_session(bank) as session:
        return [dict(row._mapping) for row in session.execute(query)]
