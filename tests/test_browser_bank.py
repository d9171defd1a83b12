"""The Bank and Try it yourself pages in a real browser (Playwright + Debian's Chromium)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from app import bank_views
from tests.conftest import BROWSER_TIMEOUT_MS


@pytest.fixture
def clipboard_page(browser: Any) -> Iterator[Page]:
    """A page whose scripts may write and read the clipboard (a person's click grants the writing in Chromium; a
    test has to grant the reading)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000},
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    yield page
    context.close()


def read_clipboard(page: Page, changed_from: str, timeout_s: float = BROWSER_TIMEOUT_MS / 1000) -> str:
    """The clipboard's text once it differs from `changed_from` (the copy runs after the click returns)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = page.evaluate("navigator.clipboard.readText()")
        if text != changed_from or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def open_bank(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Bank").click()
    expect(page.locator("#bank-gallery img").first).to_be_visible()


def test_bank_offers_only_families_it_has_and_any_page_number_works(page: Page, playground: dict[str, Any]) -> None:
    open_bank(page, playground["url"])
    page.locator("#bank-family input").click()
    options = page.get_by_role("option").all_inner_texts()
    assert "free" not in [option.strip() for option in options] and any("matrix" in o for o in options)
    page.keyboard.press("Escape")
    page.locator("#bank-page input").fill("999")
    page.locator("#bank-page input").press("Enter")
    expect(page.locator("#bank-page-note")).to_contain_text("Page 1 of 1 (there is no page 999)")
    expect(page.locator("#bank-page input")).to_have_value("1")
    expect(page.locator(".toast-message-item")).to_have_count(0)
    expect(page.locator("#bank-gallery img").first).to_be_visible()


def test_try_it_yourself_counts_one_attempt_a_round_and_moves_on(page: Page, playground: dict[str, Any]) -> None:
    from puzzles.bank import repository

    puzzle_id = playground["puzzle_ids"][4]
    page.goto(playground["url"] + f"?puzzle={puzzle_id}")
    expect(page.locator("#try-candidates img")).to_have_count(8)
    assert f"puzzle={puzzle_id}" in page.url  # the address names the puzzle, ready to share
    expect(page.locator("#try-copy-link")).to_be_visible()
    before = repository.puzzle_stats(playground["bank"], puzzle_id)["attempts"]
    page.locator("#try-choice").get_by_text("#2", exact=True).click()
    page.locator("#try-answer").click()
    expect(page.locator("#try-verdict")).to_contain_text("The answer is", timeout=30_000 * 2)
    expect(page.locator("#try-answer")).to_be_disabled()  # answering again would count another attempt
    expect(page.locator("#try-stats")).not_to_contain_text("of 1 attempts")
    assert repository.puzzle_stats(playground["bank"], puzzle_id)["attempts"] == before + 1
    page.locator("#try-next").click()
    expect(page.locator("#try-puzzle-id input, #try-puzzle-id textarea").first).not_to_have_value(puzzle_id)
    expect(page.locator("#try-answer")).to_be_enabled()
    assert f"puzzle={puzzle_id}" not in page.url


def test_bank_names_the_selected_puzzle_in_words_and_copy_link_copies_its_address(
    clipboard_page: Page, playground: dict[str, Any],
) -> None:
    page = clipboard_page
    open_bank(page, playground["url"])
    page.locator("#bank-gallery img").first.click()
    expect(page.locator("#bank-selected")).to_contain_text("Selected puzzle: ")
    selected_text = page.locator("#bank-selected").inner_text()
    page.locator("#bank-try").click()
    expect(page.locator("#try-candidates img").first).to_be_visible()
    puzzle_id = page.locator("#try-puzzle-id input, #try-puzzle-id textarea").first.input_value()
    puzzle = bank_views.fetch_puzzle(playground["bank"], puzzle_id)
    name = bank_views.puzzle_name(puzzle["title"], puzzle["family"], puzzle["difficulty"])
    assert name in selected_text and puzzle_id not in selected_text  # words, as the gallery names puzzles
    expect(page.locator("#try-title")).to_contain_text(name)
    expect(page.locator("#try-title")).not_to_contain_text(puzzle_id)
    page.evaluate("navigator.clipboard.writeText('nothing copied yet')")
    page.locator("#try-copy-link").click()
    assert read_clipboard(page, "nothing copied yet") == playground["url"] + f"?puzzle={puzzle_id}"


WATCH_FOR_ERROR_BADGES = """(selectors) => {
    window.errorBadgesSeen = [];
    const look = () => selectors.forEach((selector) => {
        const box = document.querySelector(selector);
        if (box && box.innerText.includes("Error") && !window.errorBadgesSeen.includes(selector)) {
            window.errorBadgesSeen.push(selector);
        }
    });
    new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_the_tab_opens_on_a_puzzle_and_an_answer_without_a_choice_says_so(
    page: Page, playground: dict[str, Any],
) -> None:
    page.goto(playground["url"])
    page.get_by_role("tab", name="Try it yourself").click()
    expect(page.locator("#try-candidates img").first).to_be_visible()  # a puzzle, not empty boxes
    expect(page.locator("#try-title")).to_contain_text(" ")
    boxes = ["#try-truth", "#try-generated", "#try-verdict", "#try-stats"]
    page.evaluate(WATCH_FOR_ERROR_BADGES, boxes)  # the failed event's badges may show only for a moment
    page.locator("#try-answer").click()
    expect(page.locator(".toast-message-item").first).to_contain_text("choose a candidate")
    page.wait_for_timeout(2000)
    assert page.evaluate("window.errorBadgesSeen") == []
    expect(page.locator("#try-answer")).to_be_enabled()
    shown = page.locator("#try-prompt img").get_attribute("src")
    page.get_by_role("tab", name="Play").click()
    page.get_by_role("tab", name="Try it yourself").click()
    page.wait_for_timeout(1000)
    assert page.locator("#try-prompt img").get_attribute("src") == shown  # back on the tab: the same puzzle


def test_on_a_phone_every_candidate_and_every_bank_puzzle_is_in_sight(page: Page, playground: dict[str, Any]) -> None:
    def outside(gallery: str) -> list[int]:
        """Pictures of the gallery whose right edge lies past the gallery's own (cut off, out of reach)."""
        return page.evaluate("""(selector) => {
            const box = document.querySelector(selector).getBoundingClientRect();
            return [...document.querySelectorAll(selector + ' img')].map((img, index) => [index, img])
                .filter(([, img]) => img.getBoundingClientRect().right > box.right + 1).map(([index]) => index + 1);
        }""", gallery)

    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(playground["url"] + f"?puzzle={playground['puzzle_ids'][4]}")
    expect(page.locator("#try-candidates img")).to_have_count(8)
    assert outside("#try-candidates") == []  # before: candidates 4 and 8 were cut off
    page.get_by_role("tab", name="Bank").click()
    expect(page.locator("#bank-gallery img").nth(3)).to_be_attached()
    assert outside("#bank-gallery") == []
