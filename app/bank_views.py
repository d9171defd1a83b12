"""The bank as the pages show it: a puzzle by id, gallery pages under a filter, pictures, choices, statistics.

Ids and plain values in, plain values out (images as numpy arrays); the bank's own types stay behind
`puzzles.bank.repository`, which is imported on first use so the pages import without a database.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from app.kept import KeptImages
from app.prompts import LAYOUTS
from puzzles.images import to_rgb_array

if TYPE_CHECKING:
    from puzzles.bank import Bank
    from puzzles.bank.repository import PuzzleFilter, PuzzleSummary

PER_PAGE = 12
_pictures = KeptImages(256)  # gallery pictures (at most 144 x 144 px: 62 KB each)
GAVE_UP = "I give up"
# The answer radios start with eight candidates (the usual count) so the API accepts any of them; opening a
# puzzle narrows the choices to its own candidates.
ANSWER_CHOICES = [f"#{index}" for index in range(1, 9)] + [GAVE_UP]


def decode_png(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return to_rgb_array(image)


def shown_id(puzzle_id: Any, limit: int = 40) -> str:
    """A puzzle id as a message quotes it: cut short, so a message never echoes a sender's megabytes back."""
    text = str(puzzle_id)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def fetch_published(bank: Bank, puzzle_id: str) -> dict[str, Any]:
    """A published puzzle (fetch_puzzle) for a visitor: a draft, pending or rejected one answers exactly like a
    missing one, so a visitor who knows its id learns neither its answer nor that it exists."""
    try:
        puzzle = fetch_puzzle(bank, puzzle_id)
    except ValueError:
        puzzle = None
    if puzzle is None or puzzle["status"] != "published":
        raise ValueError(f"no puzzle {shown_id(puzzle_id)} in the bank" if puzzle_id else "no puzzle chosen")
    return puzzle


def fetch_puzzle(bank: Bank, puzzle_id: str) -> dict[str, Any]:
    """A puzzle as a plain dict (images as arrays); ValueError naming the id when it is not in the bank."""
    from puzzles.bank import repository

    if not puzzle_id:
        raise ValueError("no puzzle chosen")
    try:
        stored = repository.get_puzzle(bank, str(puzzle_id))
    except repository.NotFoundError as error:
        raise ValueError(str(error)) from error
    puzzle = stored.puzzle
    return {
        "id": puzzle.id, "status": stored.status, "family": puzzle.family, "title": puzzle.title,
        "panels": list(puzzle.panels), "candidates": list(puzzle.candidates), "answer": puzzle.answer,
        "answer_index": puzzle.answer_index, "layout": dict(puzzle.layout), "tags": list(puzzle.tags),
        "difficulty": puzzle.difficulty, "meta": dict(puzzle.meta or {}),
    }


def answer_index_of(bank: Bank, puzzle_id: str | None) -> int | None:
    if not puzzle_id:
        return None
    try:
        return fetch_puzzle(bank, puzzle_id)["answer_index"]
    except ValueError:
        return None


def random_puzzle_id(bank: Bank, family: str | None = None) -> str | None:
    from puzzles.bank import repository

    stored = repository.random_puzzle(bank, family=family)
    return stored.puzzle.id if stored is not None else None


def choice_label(summary: PuzzleSummary) -> str:
    return f"{summary.title or summary.family} [{summary.id}]"


def id_from_choice(choice: str) -> str:
    """'Title [id]' -> id (a bare id passes through)."""
    choice = choice.strip()
    if choice.endswith("]") and "[" in choice:
        return choice[choice.rindex("[") + 1 : -1]
    return choice


def example_choices(bank: Bank, per_family: int = 3, families: Sequence[str] = LAYOUTS) -> list[str]:
    """A few published puzzles of each play layout (or of `families`), as dropdown labels."""
    from puzzles.bank import repository

    choices: list[str] = []
    for family in families:
        items, _ = repository.list_puzzles(bank, family=family, per_page=per_family)
        choices += [choice_label(item) for item in items]
    return choices


def bank_thumbnails(bank: Bank, limit: int = 16) -> list[tuple[np.ndarray, str]]:
    """Images from published puzzles to drag into slots: the first panels of a few puzzles."""
    from puzzles.bank import repository

    items, _ = repository.list_puzzles(bank, per_page=max(1, limit // 2))
    hashes = list(dict.fromkeys(h for item in items for h in item.panel_hashes[:2]))[:limit]
    return [(decode_png(repository.get_image(bank, h)), h[:8]) for h in hashes]


def puzzle_picture(puzzle: Mapping[str, Any], cell: int = 64) -> np.ndarray:
    """The prompt of a puzzle as one picture, laid out the way its family reads."""
    family, panels = puzzle["family"], puzzle["panels"]
    columns = 3 if family == "matrix" else 2 if family in ("analogy", "grid") else min(len(panels) + 1, 5)
    from puzzles.draw import montage

    return montage(panels, columns, cell)


def gallery_picture(bank: Bank, item: PuzzleSummary) -> np.ndarray:
    """A puzzle's picture in the bank's gallery, drawn once: it depends on its family and images alone, and the
    bank names images by their content, so a page of the bank reads no image again after the first time."""
    from puzzles.bank import repository

    def draw() -> np.ndarray:
        panels = [decode_png(repository.get_image(bank, h)) for h in item.panel_hashes]
        return puzzle_picture({"family": item.family, "panels": panels}, cell=48)

    return _pictures.get((item.family, tuple(item.panel_hashes)), draw)


def puzzle_filter(family: Any, layout: Any, tag: Any, low: Any, high: Any, model_wrong: Any,
                  status: Any = "published") -> PuzzleFilter:
    """The bank's filter from a form's values (the Bank page's, the curator export's): "any" or empty takes every
    family, layout or status; levels 1 to 5 take every difficulty; a ticked "model gets it wrong" keeps the puzzles
    a model got wrong (unticked: no filter on the model)."""
    from puzzles.bank.repository import PuzzleFilter

    low_level, high_level = int(low or 1), int(high or 5)
    if low_level > high_level:
        raise ValueError(f"lowest difficulty {low_level} is above the highest {high_level}")

    def chosen(value: Any) -> str | None:
        return None if value in (None, "", "any") else str(value).strip()

    return PuzzleFilter(
        family=chosen(family), layout=chosen(layout), tag=str(tag).strip() or None if tag else None,
        difficulty=None if (low_level, high_level) == (1, 5) else (low_level, high_level),
        status=chosen(status), model_wrong=True if model_wrong else None,
    )


def puzzle_name(title: str | None, family: str, difficulty: int) -> str:
    """A puzzle as visitors see it named: its title (else its family) and level. Ids are for programs and links."""
    return f"{title or family} · level {difficulty}"


def bank_page(bank: Bank, filters: PuzzleFilter, page: int) -> tuple[list[tuple[np.ndarray, str]], list[str], int]:
    """One page of the bank gallery: (picture, caption) items, their ids, and the number of pages."""
    from puzzles.bank import repository

    items, total = repository.list_puzzles(bank, filters, page=max(0, int(page)), per_page=PER_PAGE)
    pictures = [(gallery_picture(bank, item), puzzle_name(item.title, item.family, item.difficulty)) for item in items]
    pages = max(1, -(-total // PER_PAGE))
    return pictures, [item.id for item in items], pages


def choice_index(choice: Any) -> int | None:
    """'#3' / '3' / 3 -> 2 (0-based); 'I give up' or empty -> None."""
    if choice is None or choice == "" or choice == GAVE_UP:
        return None
    text = str(choice).lstrip("#").strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"choose a candidate number (1, 2, ...) or {GAVE_UP!r}, not {choice!r}")
    return int(text) - 1


def stats_markdown(stats: Mapping[str, Any], model_correct: bool | None) -> str:
    """Human success rate on a puzzle next to the model's result."""
    attempts = stats.get("attempts", 0)
    rate = stats.get("success_rate")
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    human = f"{100 * rate:.0f}% of {tries}" if rate is not None else "no attempts yet"
    model = "no candidates to rank" if model_correct is None else ("right" if model_correct else "wrong")
    return f"**People:** {human} solved it · **The model:** {model}"
