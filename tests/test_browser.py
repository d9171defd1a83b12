"""The playground in a real browser (Playwright + Debian's Chromium) against the app served in-process."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from app import bank_views
from puzzles.bank import repository
from puzzles.images import png_bytes
from tests.conftest import BROWSER_TIMEOUT_MS as TIMEOUT_MS
from tests.conftest import open_playground


def _open(page: Page, url: str) -> None:
    open_playground(page, url)


def _panel_files(playground: dict[str, Any], tmp_path: Path) -> list[Path]:
    puzzle = bank_views.fetch_puzzle(playground["bank"], playground["puzzle_ids"][0])
    paths = []
    for index, image in enumerate(puzzle["panels"]):
        path = tmp_path / f"panel{index}.png"
        path.write_bytes(png_bytes(image))
        paths.append(path)
    return paths


DROP_FILE = """async ([selector, name, base64]) => {
  const bytes = Uint8Array.from(atob(base64), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "image/png"}));
  const target = document.querySelector(selector + " input[type=file]").parentElement;
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
  }
}"""


def _drop_file(page: Page, slot: str, path: Path) -> None:
    """Drop a file from the desktop onto a slot, as the browser does (a drop event carrying a File)."""
    import base64

    page.evaluate(DROP_FILE, [f"#{slot}", path.name, base64.b64encode(path.read_bytes()).decode()])
    expect(page.locator(f"#{slot} img")).to_be_visible()


def test_drop_solve_rate(page: Page, playground: dict[str, Any], tmp_path: Path) -> None:
    _open(page, playground["url"])
    for slot, path in zip(("slot-a1", "slot-a1p", "slot-b"), _panel_files(playground, tmp_path), strict=True):
        _drop_file(page, slot, path)
    before = len(repository.list_ratings(playground["bank"]))
    page.locator("#solve").click()
    expect(page.locator("#samples img")).to_have_count(4, timeout=TIMEOUT_MS * 2)
    expect(page.locator("#settings-used")).to_contain_text("seed 0")
    page.screenshot(path=str(tmp_path / "solved.png"), full_page=True)
    page.locator("#samples img").nth(1).click()
    page.keyboard.press("Escape")
    page.locator("#rate").click()
    expect(page.locator("#rate-status")).to_contain_text("rated")
    page.screenshot(path=str(tmp_path / "drop-solve-rate.png"), full_page=True)
    ratings = repository.list_ratings(playground["bank"])
    assert len(ratings) == before + 1
    assert ratings[0]["bundle_id"].startswith("tiny-test@") and ratings[0]["score"] == 1


def test_deep_link_opens_the_puzzle(page: Page, playground: dict[str, Any], tmp_path: Path) -> None:
    puzzle_id = playground["puzzle_ids"][3]
    page.goto(playground["url"] + f"?puzzle={puzzle_id}")
    expect(page.locator("#try-puzzle-id textarea, #try-puzzle-id input").first).to_have_value(puzzle_id)
    expect(page.locator("#try-candidates img")).to_have_count(8)
    page.screenshot(path=str(tmp_path / "deep-link.png"), full_page=True)


def test_drag_bank_thumbnail_into_a_slot(page: Page, playground: dict[str, Any], tmp_path: Path) -> None:
    _open(page, playground["url"])
    page.locator("#bank-images-accordion").get_by_text("Bank images").click()
    thumbnail = page.locator("#bank-images img").first
    expect(thumbnail).to_be_visible()
    placed = page.locator("#slot-a1 img")
    for _ in range(2):  # on a loaded machine the gallery can re-render under the first drag: drag once more
        thumbnail.drag_to(page.locator("#slot-a1"))
        try:
            expect(placed).to_be_visible(timeout=TIMEOUT_MS // 2)
            break
        except AssertionError:
            continue
    expect(placed).to_be_visible()
    page.screenshot(path=str(tmp_path / "drag-thumbnail.png"), full_page=True)


def test_try_it_yourself_round(page: Page, playground: dict[str, Any], tmp_path: Path) -> None:
    _open(page, playground["url"])
    page.locator("#tab-bank-button, button[role=tab]:has-text('Bank')").first.click()
    expect(page.locator("#bank-gallery img").first).to_be_visible()
    page.locator("#bank-gallery img").first.click()
    expect(page.locator("#bank-selected")).to_contain_text("Selected puzzle")
    page.locator("#bank-try").click()
    expect(page.locator("#try-candidates img").first).to_be_visible()
    puzzle_id = page.locator("#try-puzzle-id textarea, #try-puzzle-id input").first.input_value()
    attempts_before = repository.puzzle_stats(playground["bank"], puzzle_id)["attempts"]
    page.locator("#try-choice").get_by_text("#1", exact=True).click()
    page.locator("#try-answer").click()
    expect(page.locator("#try-verdict")).to_contain_text("The answer is", timeout=TIMEOUT_MS * 2)
    expect(page.locator("#try-stats")).to_contain_text("People:")
    page.screenshot(path=str(tmp_path / "try-it-yourself.png"), full_page=True)
    assert repository.puzzle_stats(playground["bank"], puzzle_id)["attempts"] == attempts_before + 1
