"""Bank statistics for curators: the numbers (plain functions over the bank) and their plots (matplotlib).

Numbers: ratings over time, model accuracy vs human success per family and layout, the most-missed
puzzles, the most active submitters, and difficulty suggestions from human success rates. Each `plot_*`
takes the matching numbers and returns a matplotlib Figure (the Agg backend: no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Integer, case, func, select

from puzzles.bank.db import Bank, read_session
from puzzles.bank.models import Attempt, ModelResult, PuzzleRow, Rating

# Human success rate -> suggested difficulty: at or above the first bound level 1, ... below the last level 5.
DIFFICULTY_BOUNDS = (0.9, 0.7, 0.5, 0.3)
MIN_ATTEMPTS_FOR_SUGGESTION = 5


@dataclass(frozen=True)
class DaySummary:
    day: date
    up: int
    down: int
    neutral: int


def ratings_over_time(bank: Bank) -> list[DaySummary]:
    """Ratings per day (by when they were last given), oldest day first."""
    day = func.date(Rating.updated_at)
    query = (
        select(
            day,
            func.sum(case((Rating.score > 0, 1), else_=0)),
            func.sum(case((Rating.score < 0, 1), else_=0)),
            func.sum(case((Rating.score == 0, 1), else_=0)),
        )
        .group_by(day)
        .order_by(day)
    )
    with read_session(bank) as session:
        rows = session.execute(query).all()
    return [DaySummary(_as_date(d), int(u), int(n), int(z)) for d, u, n, z in rows]


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def accuracy_by_group(bank: Bank) -> list[dict[str, Any]]:
    """Per (family, layout kind): model accuracy over model results and human success over attempts."""
    model = (
        select(
            PuzzleRow.family,
            PuzzleRow.layout_kind,
            func.count(ModelResult.puzzle_id),
            func.coalesce(func.sum(func.cast(ModelResult.correct, Integer)), 0),
        )
        .join(ModelResult, ModelResult.puzzle_id == PuzzleRow.id)
        .group_by(PuzzleRow.family, PuzzleRow.layout_kind)
    )
    human = (
        select(
            PuzzleRow.family,
            PuzzleRow.layout_kind,
            func.count(Attempt.id),
            func.coalesce(func.sum(func.cast(Attempt.correct, Integer)), 0),
        )
        .join(Attempt, Attempt.puzzle_id == PuzzleRow.id)
        .group_by(PuzzleRow.family, PuzzleRow.layout_kind)
    )
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    with read_session(bank) as session:
        for kind, query in (("model", model), ("human", human)):
            for family, layout, total, right in session.execute(query):
                entry = groups.setdefault(
                    (family, layout),
                    {"family": family, "layout": layout, "model_n": 0, "model_accuracy": None,
                     "human_n": 0, "human_success": None},
                )
                entry[f"{kind}_n"] = int(total)
                entry["model_accuracy" if kind == "model" else "human_success"] = int(right) / total if total else None
    return [groups[key] for key in sorted(groups)]


def most_missed(bank: Bank, limit: int = 10, min_attempts: int = 1) -> list[dict[str, Any]]:
    """Puzzles people get wrong most (lowest success rate, then most attempts), with their counts."""
    total = func.count(Attempt.id)
    solved = func.coalesce(func.sum(func.cast(Attempt.correct, Integer)), 0)
    query = (
        select(PuzzleRow.id, PuzzleRow.title, PuzzleRow.family, total.label("attempts"), solved.label("solved"))
        .join(Attempt, Attempt.puzzle_id == PuzzleRow.id)
        .group_by(PuzzleRow.id, PuzzleRow.title, PuzzleRow.family)
        .having(total >= min_attempts)
        .order_by((func.cast(solved, Integer) * 1.0 / total).asc(), total.desc(), PuzzleRow.id)
        .limit(limit)
    )
    with read_session(bank) as session:
        rows = session.execute(query).all()
    return [
        {"id": i, "title": t, "family": f, "attempts": int(a), "missed": int(a) - int(s), "success_rate": int(s) / a}
        for i, t, f, a, s in rows
    ]


def top_submitters(bank: Bank, limit: int = 10) -> list[dict[str, Any]]:
    """Who submitted the most puzzles, with how many of theirs are published."""
    total = func.count(PuzzleRow.id)
    published = func.sum(case((PuzzleRow.status == "published", 1), else_=0))
    query = (
        select(PuzzleRow.submitted_by, total, published)
        .where(PuzzleRow.submitted_by.is_not(None))
        .group_by(PuzzleRow.submitted_by)
        .order_by(total.desc(), PuzzleRow.submitted_by)
        .limit(limit)
    )
    with read_session(bank) as session:
        rows = session.execute(query).all()
    return [{"submitter": who, "submitted": int(n), "published": int(p or 0)} for who, n, p in rows]


def suggested_difficulty(success_rate: float) -> int:
    """The level (1 easy .. 5 hard) that a human success rate suggests."""
    if not 0.0 <= success_rate <= 1.0:
        raise ValueError(f"success rate must be between 0 and 1, got {success_rate}")
    for level, bound in enumerate(DIFFICULTY_BOUNDS, start=1):
        if success_rate >= bound:
            return level
    return len(DIFFICULTY_BOUNDS) + 1


def difficulty_suggestions(bank: Bank, min_attempts: int = MIN_ATTEMPTS_FOR_SUGGESTION) -> list[dict[str, Any]]:
    """Puzzles with enough attempts whose stored difficulty differs from what their success rate suggests."""
    total = func.count(Attempt.id)
    solved = func.coalesce(func.sum(func.cast(Attempt.correct, Integer)), 0)
    query = (
        select(PuzzleRow.id, PuzzleRow.title, PuzzleRow.difficulty, total, solved)
        .join(Attempt, Attempt.puzzle_id == PuzzleRow.id)
        .group_by(PuzzleRow.id, PuzzleRow.title, PuzzleRow.difficulty)
        .having(total >= min_attempts)
        .order_by(PuzzleRow.id)
    )
    with read_session(bank) as session:
        rows = session.execute(query).all()
    suggestions = []
    for puzzle_id, title, current, attempts, right in rows:
        rate = int(right) / attempts
        level = suggested_difficulty(rate)
        if level != current:
            suggestions.append({"id": puzzle_id, "title": title, "current": current, "suggested": level,
                                "success_rate": rate, "attempts": int(attempts)})
    return suggestions


# ---------------------------------------------------------------- plots


def _figure(title: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, safe in server threads

    figure = Figure(figsize=(7, 3.5), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    return figure, axes


def _empty(axes: Any, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=axes.transAxes, color="grey")
    axes.set_xticks([])
    axes.set_yticks([])


def plot_ratings_over_time(days: list[DaySummary]) -> Any:
    figure, axes = _figure("Ratings of model outputs per day")
    if not days:
        _empty(axes, "ratings")
        return figure
    x = [d.day for d in days]
    axes.plot(x, [d.up for d in days], marker="o", label="👍 up", color="tab:green")
    axes.plot(x, [d.down for d in days], marker="o", label="👎 down", color="tab:red")
    axes.plot(x, [d.neutral for d in days], marker="o", label="neutral", color="tab:grey")
    axes.set_ylabel("ratings")
    axes.legend(loc="upper left")
    figure.autofmt_xdate()
    return figure


def plot_accuracy_by_group(groups: list[dict[str, Any]]) -> Any:
    figure, axes = _figure("Model accuracy vs human success, per family / layout")
    if not groups:
        _empty(axes, "model results or attempts")
        return figure
    labels = [f"{g['family']}/{g['layout'] or '-'}" for g in groups]
    positions = range(len(groups))
    width = 0.4
    axes.bar([p - width / 2 for p in positions], [g["model_accuracy"] or 0 for g in groups], width, label="model")
    axes.bar([p + width / 2 for p in positions], [g["human_success"] or 0 for g in groups], width, label="humans")
    axes.set_xticks(list(positions), labels, rotation=30, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel("fraction right")
    axes.legend()
    return figure


def plot_most_missed(rows: list[dict[str, Any]]) -> Any:
    figure, axes = _figure("Most-missed puzzles (human success rate)")
    if not rows:
        _empty(axes, "attempts")
        return figure
    labels = [f"{r['title'] or r['family']} ({r['id'][:6]})" for r in rows]
    axes.barh(labels[::-1], [r["success_rate"] for r in rows][::-1], color="tab:orange")
    axes.set_xlim(0, 1)
    axes.set_xlabel("success rate")
    return figure


def plot_top_submitters(rows: list[dict[str, Any]]) -> Any:
    figure, axes = _figure("Most active submitters")
    if not rows:
        _empty(axes, "submissions")
        return figure
    names = [r["submitter"][:16] for r in rows][::-1]
    axes.barh(names, [r["submitted"] for r in rows][::-1], label="submitted", color="tab:blue")
    axes.barh(names, [r["published"] for r in rows][::-1], label="published", color="tab:green")
    axes.set_xlabel("puzzles")
    axes.legend()
    return figure


def all_plots(bank: Bank) -> dict[str, Any]:
    """Every statistics figure for the bank, by name."""
    return {
        "ratings_over_time": plot_ratings_over_time(ratings_over_time(bank)),
        "accuracy_by_group": plot_accuracy_by_group(accuracy_by_group(bank)),
        "most_missed": plot_most_missed(most_missed(bank)),
        "top_submitters": plot_top_submitters(top_submitters(bank)),
    }
