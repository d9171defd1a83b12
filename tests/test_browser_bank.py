"""The Bank and Try it yourself pages in a real browser (Playwright + Debian's Chromium)."""
from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect


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
