"""ARC grid puzzles played in a real browser: the answer-grid editor, three tries, next task, the model beside."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from puzzles.bank import connect, repository
from puzzles.generators import grid
from tests.conftest import BROWSER_TIMEOUT_MS as TIMEOUT_MS
from tests.conftest import second_app

SHOTS = Path("/tmp/shots")
# Swap the two colours: blue on black becomes black on blue.
TASKS = [
    ([([[1, 0], [0, 1]], [[0, 1], [1, 0]])], [[1, 1], [0, 0]], [[0, 0], [1, 1]]),
    ([([[2, 0, 2]], [[0, 2, 0]])], [[0, 0, 2]], [[2, 2, 0]]),
]


@pytest.fixture(scope="module")
def arc_app(tmp_path_factory: pytest.TempPathFactory, tiny_bundle_dir: Path) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("arc")
    bank = connect(f"sqlite:///{data_dir / 'gelato.db'}")
    ids = []
    for number, (pairs, query, answer) in enumerate(TASKS):
        puzzle = grid.puzzle_from_pairs(pairs, query, answer, 64, f"test{number}", {"test": number})
        ids.append(repository.add_puzzle(bank, puzzle, status="published"))
    with second_app(data_dir, tiny_bundle_dir, bank) as url:
        yield {"url": url, "bank": bank, "ids": ids}
    bank.close()


def _paint(page: Page, target: list[list[int]]) -> None:
    page.locator("#arc-rows").fill(str(len(target)))
    page.locator("#arc-cols").fill(str(len(target[0])))
    page.locator("#arc-resize").click()
    for row, line in enumerate(target):
        for col, colour in enumerate(line):
            page.locator(f".gelato-arc-swatch[data-colour='{colour}']").click()
            page.locator(f".gelato-arc-cell[data-row='{row}'][data-col='{col}']").click()


def test_a_person_solves_an_arc_task_in_the_grid_editor(page: Page, arc_app: dict[str, Any]) -> None:
    first = arc_app["ids"][0]
    page.goto(arc_app["url"] + f"?puzzle={first}")
    expect(page.locator("#arc-check")).to_be_visible()
    expect(page.locator("#try-choice")).not_to_be_visible()
    expect(page.locator(".gelato-arc-cell")).to_have_count(4)  # the test input's size to start with
    page.locator("#arc-check").click()  # an all-black grid: wrong
    expect(page.locator("#arc-verdict")).to_contain_text("2 tries left")
    page.locator("#arc-copy").click()  # the input itself: wrong again
    page.locator("#arc-check").click()
    expect(page.locator("#arc-verdict")).to_contain_text("1 try left")
    _paint(page, TASKS[0][2])
    page.locator("#arc-check").click()
    expect(page.locator("#arc-verdict")).to_contain_text("Right!", timeout=TIMEOUT_MS * 2)
    expect(page.locator("#arc-verdict")).to_contain_text("The model")
    expect(page.locator("#arc-mine img")).to_be_visible()
    expect(page.locator("#arc-check")).to_be_disabled()
    assert f"puzzle={first}" in page.url
    stats = repository.puzzle_stats(arc_app["bank"], first)
    assert stats["attempts"] == 1 and stats["success_rate"] == 1.0
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "arc.png"), full_page=True)
    page.locator("#try-next").click()
    expect(page.locator("#try-puzzle-id input, #try-puzzle-id textarea").first).not_to_have_value(first)
    expect(page.locator(".gelato-arc-cell")).to_have_count(3)
    expect(page.locator("#arc-check")).to_be_enabled()
    expect(page.locator("#arc-verdict")).not_to_contain_text("Right")


def test_three_wrong_tries_end_the_round_with_the_answer(page: Page, arc_app: dict[str, Any]) -> None:
    second = arc_app["ids"][1]
    page.goto(arc_app["url"] + f"?puzzle={second}")
    expect(page.locator(".gelato-arc-cell")).to_have_count(3)
    for left in ("2 tries left", "1 try left", "No tries left"):
        page.locator("#arc-check").click()
        expect(page.locator("#arc-verdict")).to_contain_text(left, timeout=TIMEOUT_MS * 2)
    expect(page.locator("#arc-check")).to_be_disabled()
    expect(page.locator("#arc-truth img")).to_be_visible()  # the answer, once the tries are used up
    expect(page.locator("#try-truth")).not_to_be_visible()  # the candidate puzzles' reveal stays hidden
