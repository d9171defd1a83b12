"""The Play page in a real browser, as a first-time visitor meets it (Playwright + Debian's Chromium)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import BROWSER_TIMEOUT_MS as TIMEOUT_MS

SHOTS = Path("/tmp/shots")


def _open(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#solve")).to_be_visible()
    expect(page.locator("#examples")).to_be_visible()


def choose_example(page: Page, index: int) -> None:
    """Open the examples dropdown and click its `index`-th choice."""
    page.locator("#examples input").click()
    page.get_by_role("option").nth(index).click()


def _solve_example(page: Page, index: int) -> None:
    choose_example(page, index)
    expect(page.locator("#candidates img").first).to_be_visible()
    page.locator("#solve").click()
    expect(page.locator("#samples img").first).to_be_visible(timeout=TIMEOUT_MS * 2)
    expect(page.locator("#ranking .gelato-bar-row")).to_have_count(8)


def _bar_colours(page: Page) -> dict[str, set[str]]:
    """Role -> the computed fill colours of that role's bars in the chart on screen."""
    found = page.eval_on_selector_all(
        "#ranking .gelato-bar-row",
        "rows => rows.map(r => [r.dataset.role, getComputedStyle(r.querySelector('.gelato-bar')).backgroundColor])",
    )
    colours: dict[str, set[str]] = {}
    for role, colour in found:
        colours.setdefault(role, set()).add(colour)
    return colours


def test_ranking_chart_keeps_one_colour_per_role_on_a_second_solve(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    _solve_example(page, 0)
    first = _bar_colours(page)
    page.evaluate("document.querySelector('#ranking .gelato-ranking').dataset.stale = 'yes'")
    _solve_example(page, 1)  # another puzzle: a new chart, drawn from scratch
    expect(page.locator("#ranking .gelato-ranking[data-stale]")).to_have_count(0)
    second = _bar_colours(page)
    assert "answer" in second and all(len(colours) == 1 for colours in second.values())
    assert all("rgba(0, 0, 0, 0)" not in colours for colours in second.values()), "a bar has no fill"
    assert all(first[role] == second[role] for role in first.keys() & second.keys()), "colours changed meaning"
    legend = page.locator("#ranking .gelato-legend")
    expect(legend).to_contain_text("the answer")
    expect(legend).to_contain_text("the model's pick")
    expect(legend).to_contain_text("other candidates")
    tooltip = page.locator("#ranking .gelato-bar-row").first.get_attribute("title") or ""
    assert "% of the probability among the candidates" in tooltip and "-431.099484369" not in tooltip
    shares = page.locator("#ranking .gelato-bar-value").all_inner_texts()
    assert sum(int(text.split("%")[0]) for text in shares) in range(97, 104)  # rounded shares of 100%
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "ranking.png"), full_page=True)
