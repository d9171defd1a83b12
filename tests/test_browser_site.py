"""Pages outside the playground's tabs: the curator login and the answer to an unknown URL."""
from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Page, expect


def test_unknown_urls_get_a_small_page_with_a_way_back(page: Page, playground: dict[str, Any]) -> None:
    response = page.goto(playground["url"] + "no/such/page")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")
    page.locator("#back-home").click()
    expect(page.locator("#solve")).to_be_visible()
    program = httpx.get(playground["url"] + "no/such/page", headers={"Accept": "application/json"})
    assert program.status_code == 404 and program.json() == {"detail": "Not Found"}


def test_curator_login_is_styled_and_leads_back(page: Page, playground: dict[str, Any]) -> None:
    page.goto(playground["url"] + "curate/")
    heading = page.locator("h1")
    expect(heading).to_have_text("Curator login")  # no emoji: it shows as a box without an emoji font
    colour = page.locator("#login-submit").evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour not in ("rgb(239, 239, 239)", "rgba(0, 0, 0, 0)"), "the browser's bare button"
    page.locator("#back-home").click()
    expect(page.locator("#solve")).to_be_visible()
