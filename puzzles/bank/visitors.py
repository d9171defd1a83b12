"""What visitors leave in the bank (ratings of model outputs, attempts at puzzles), what models got right,
and the statistics over them."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Integer, func, select
from sqlalchemy.exc import IntegrityError

from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import (
    STATUSES,
    Attempt,
    Curator,
    Image,
    ModelResult,
    PuzzleCandidate,
    PuzzleRow,
    Rating,
    utc_now,
)
from puzzles.bank.store import (
    MAX_BUNDLE_LENGTH,
    MAX_VISITOR_LENGTH,
    NotFoundError,
    dialect_insert,
    image_refs,
    is_json,
    require_text,
)
from puzzles.puzzle import FAMILIES

log = logging.getLogger(__name__)


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


