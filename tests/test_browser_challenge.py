"""The Challenge in a real browser: a visible clock, a choice required, feedback per question, a confirmed restart,
and an end screen without empty boxes."""
from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import BROWSER_TIMEOUT_MS as TIMEOUT_MS


def test_a_challenge_run_from_start_to_the_end_screen(page: Page, playground: dict[str, Any]) -> None:
    page.goto(playground["url"])
    page.get_by_role("tab", name="Challenge").click()
    page.locator("#challenge-start").click()
    expect(page.locator("#challenge-heading")).to_contain_text("Puzzle 1 of 3")
    expect(page.locator("#challenge-clock .gelato-clock")).to_contain_text("0:0")
    page.wait_for_timeout(2200)
    expect(page.locator("#challenge-clock .gelato-clock")).not_to_have_text("⏱ 0:00")  # it ticks
    page.locator("#challenge-next").click()  # no choice yet: not counted
    expect(page.get_by_text("pick a candidate").first).to_be_visible()
    expect(page.locator("#challenge-heading")).to_contain_text("Puzzle 1 of 3")
    page.locator("#challenge-choice").get_by_text("#1", exact=True).click()
    page.locator("#challenge-next").click()
    expect(page.locator("#challenge-heading")).to_contain_text("Puzzle 2 of 3")
    expect(page.locator("#challenge-result")).to_contain_text("#1 is")  # right or wrong, said at once
    page.locator("#challenge-start").click()  # mid-run: asks first
    expect(page.locator("#challenge-result")).to_contain_text("Press Start again")
    expect(page.locator("#challenge-heading")).to_contain_text("Puzzle 2 of 3")
    for _ in range(2):
        page.locator("#challenge-choice").get_by_text("#2", exact=True).click()
        page.locator("#challenge-next").click()
        page.wait_for_timeout(300)
    expect(page.locator("#challenge-heading")).to_contain_text("Done", timeout=TIMEOUT_MS * 2)
    expect(page.locator("#challenge-result")).to_contain_text("The model, same puzzles")
    expect(page.locator("#challenge-result table").last).to_contain_text("level")
    expect(page.locator("#challenge-prompt")).not_to_be_visible()
    expect(page.locator("#challenge-candidates")).not_to_be_visible()
