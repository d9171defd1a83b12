"""ORM tables of the bank. The Alembic migrations under migrations/versions create exactly these.

Times are naive UTC datetimes (SQLite keeps no time zone). Images are content-addressed by the sha256 of
their canonical PNG bytes and stored once; every other table refers to them by hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUSES = ("draft", "pending", "published", "rejected")

# Stable constraint names so migrations (and batch mode on SQLite) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """Naive UTC now: the one clock every row uses."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Image(Base):
    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)


class PuzzleRow(Base):
    __tablename__ = "puzzles"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'pending', 'published', 'rejected')", name="status"),
        Index("ix_puzzles_status_family", "status", "family"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    family: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)  # kept in order; puzzle_tags indexes them
    difficulty: Mapped[int] = mapped_column(Integer, default=1)
    layout: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    layout_kind: Mapped[str] = mapped_column(String(64), default="", index=True)  # layout["kind"], for filtering
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    licence: Mapped[str] = mapped_column(String(64), default="CC0-1.0")
    answer_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"), nullable=True)
    answer_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)
    submitted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class PuzzlePanel(Base):
    __tablename__ = "puzzle_panels"

    puzzle_id: Mapped[str] = mapped_column(ForeignKey("puzzles.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)


class PuzzleCandidate(Base):
    __tablename__ = "puzzle_candidates"

    puzzle_id: Mapped[str] = mapped_column(ForeignKey("puzzles.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)


class PuzzleTag(Base):
    """One row per (puzzle, tag) so the tag filter is a plain indexed join on every database."""

    __tablename__ = "puzzle_tags"

    puzzle_id: Mapped[str] = mapped_column(ForeignKey("puzzles.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Rating(Base):
    """A visitor's thumbs up/down on one model output, for a bank puzzle or a free prompt.

    `target` is "puzzle:<id>" or "prompt:<sha256 of the prompt hashes>", so one unique key covers both
    cases (NULLs never collide in a unique index, which would let duplicates through).
    """

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("visitor_id", "output_sha256", "target", name="uq_ratings_visitor_output_target"),
        CheckConstraint("score IN (-1, 0, 1)", name="score"),
        CheckConstraint("(puzzle_id IS NULL) <> (prompt_hashes IS NULL)", name="puzzle_or_prompt"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    puzzle_id: Mapped[str | None] = mapped_column(
        ForeignKey("puzzles.id", ondelete="CASCADE"), nullable=True, index=True
    )
    prompt_hashes: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    target: Mapped[str] = mapped_column(String(80))
    bundle_id: Mapped[str] = mapped_column(String(128), default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"))
    sample_index: Mapped[int] = mapped_column(Integer, default=0)
    score: Mapped[int] = mapped_column(Integer)
    is_correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    visitor_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    puzzle_id: Mapped[str] = mapped_column(ForeignKey("puzzles.id", ondelete="CASCADE"), index=True)
    visitor_id: Mapped[str] = mapped_column(String(128))
    choice: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the visitor gave up
    correct: Mapped[bool] = mapped_column(Boolean)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)


class ModelResult(Base):
    """Which candidate a model bundle picked for a puzzle: what the "model gets it wrong" filter reads."""

    __tablename__ = "model_results"

    puzzle_id: Mapped[str] = mapped_column(ForeignKey("puzzles.id", ondelete="CASCADE"), primary_key=True)
    bundle_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    picked_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    correct: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)


class Curator(Base):
    __tablename__ = "curators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)


class LoginFailure(Base):
    """Failed curator logins, kept in the database so the rate limit holds across processes."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_name_at", "name", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)
    reason: Mapped[str] = mapped_column(String(32))


class AuditEntry(Base):
    """One curator action. `curator` is the name, not a foreign key, so history outlives accounts."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    curator: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utc_now)
