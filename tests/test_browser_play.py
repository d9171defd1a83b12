"""The Play page in a real browser, as a first-time visitor meets it (Playwright + Debian's Chromium)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import BROWSER_TIMEOUT_MS as TIMEOUT_MS
from tests.conftest import open_playground

SHOTS = Path("/tmp/shots")


def _open(page: Page, url: str) -> None:
    open_playground(page, url)
    expect(page.locator("#examples")).to_be_visible()


def _set_slider(page: Page, elem_id: str, value: int, tries: int = 5) -> None:
    """Set a Slider through its range input until its number box shows the value and still shows it a second
    later. Just after its accordion opens, a slider sometimes goes back to its default (seen in 3 of 13 tries
    without a retry, and once in CI after the box had shown the new value); a slider that never keeps the value
    still fails here, by name."""
    number = page.locator(f"#{elem_id} input[type=number]")
    for attempt in range(1, tries + 1):
        page.locator(f"#{elem_id} input[type=range]").fill(str(value))
        try:
            expect(number).to_have_value(str(value), timeout=3_000)
            page.wait_for_timeout(1_000)
            expect(number).to_have_value(str(value), timeout=100)
            return
        except AssertionError:
            if attempt == tries:
                raise


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


def _chart_reading(page: Page) -> tuple[list[str], str]:
    return page.locator("#ranking .gelato-bar-value").all_inner_texts(), page.locator("#pick").inner_text()


def test_solve_pressed_right_after_choosing_an_example_answers_that_example(
    page: Page, playground: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.pages import play

    _open(page, playground["url"])
    _solve_example(page, 0)
    first = _chart_reading(page)
    page.evaluate("document.querySelector('#ranking .gelato-ranking').dataset.stale = 'yes'")
    fill = play.fill_from_puzzle

    def slow_fill(*args: Any) -> Any:  # a busy server: the example arrives a while after it was chosen
        time.sleep(1.5)
        return fill(*args)

    monkeypatch.setattr(play, "fill_from_puzzle", slow_fill)
    choose_example(page, 1)
    page.locator("#solve").click()  # at once, as a quick person does
    expect(page.locator("#ranking .gelato-ranking[data-stale]")).to_have_count(0, timeout=TIMEOUT_MS * 2)
    expect(page.locator("#ranking .gelato-bar-row")).to_have_count(8)
    assert _chart_reading(page) != first, "the chart still reads the first example"
    expect(page.locator("#solve")).to_be_enabled()


def test_settings_line_names_the_model_in_words(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    _solve_example(page, 0)
    settings = page.locator("#settings-used")
    expect(settings).to_contain_text("model tiny-test (trained ")
    expect(settings).not_to_contain_text("@")  # no "bundle name@hash" for a visitor to decode
    exact = settings.locator("span[title]").first.get_attribute("title") or ""
    assert exact.startswith("bundle tiny-test@"), "the exact bundle id stays at hand, as a tooltip"


def test_guidance_is_the_models_choice_until_a_visitor_picks_one(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    page.locator("#advanced").get_by_text("Advanced").click()
    expect(page.locator("#guidance input")).to_have_value("the model's choice")
    _solve_example(page, 0)  # an analogy; the test bundle's manifest guides no family
    expect(page.locator("#settings-used")).to_contain_text("guidance off")
    page.locator("#guidance input").click()
    page.get_by_role("option", name="2", exact=True).click()
    expect(page.locator("#guidance input")).to_have_value("2")
    page.locator("#solve").click()
    expect(page.locator("#settings-used")).to_contain_text("guidance 2,", timeout=TIMEOUT_MS * 2)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "play-guidance.png"), full_page=True)


def _no_error_badges(page: Page, *selectors: str) -> None:
    for selector in selectors:
        expect(page.locator(selector).get_by_text("Error", exact=True)).to_have_count(0)


def test_new_prompts_clear_stale_results(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    _solve_example(page, 0)
    page.locator("#model-sees").click()
    expect(page.locator("#sees img").first).to_be_visible(timeout=TIMEOUT_MS * 2)
    expect(page.locator("#pick")).to_contain_text("Model's pick")
    page.locator("#clear-all").click()
    expect(page.locator("#samples img")).to_have_count(0)
    expect(page.locator("#sees img")).to_have_count(0)
    expect(page.locator("#ranking")).not_to_be_visible()
    expect(page.locator("#pick")).not_to_contain_text("Model's pick")
    expect(page.locator("#settings-used")).not_to_contain_text("Settings used")
    expect(page.locator("#examples input")).to_have_value("")
    choose_example(page, 1)
    page.locator("#model-sees").click()
    expect(page.locator("#sees img").first).to_be_visible(timeout=TIMEOUT_MS * 2)
    choose_example(page, 2)  # another prompt: what the model saw of the last one goes
    expect(page.locator("#sees img")).to_have_count(0)
    page.locator("#random-puzzle").click()
    expect(page.locator("#examples input")).to_have_value("")


def test_failed_events_leave_no_error_badges(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    _solve_example(page, 0)
    page.locator("#rate").click()
    expect(page.locator("#rate-status")).to_contain_text("Thanks")
    page.locator("#rate-sample input").fill("9")
    page.locator("#rate").click()
    expect(page.get_by_text("there is no sample 9").first).to_be_visible()
    expect(page.locator("#rate-status")).not_to_contain_text("Thanks")
    page.locator("#clear-all").click()
    page.locator("#solve").click()
    expect(page.get_by_text("fill every analogy slot first").first).to_be_visible()
    page.wait_for_timeout(1000)
    _no_error_badges(page, "#samples", "#sees", "#rate-sample", "#rate-status", "#ranking", "#settings-used")
    expect(page.locator("#rate-sample")).to_be_visible()


def test_examples_closed_without_a_choice_says_nothing(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    page.locator("#examples input").click()
    expect(page.get_by_role("option").first).to_be_visible()
    page.locator("h1").first.click()  # close the list by clicking elsewhere
    page.wait_for_timeout(1500)
    expect(page.locator(".toast-message-item")).to_have_count(0)
    expect(page.locator("#slot-a1 img")).to_have_count(0)


def test_samples_are_numbered_from_one(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    _solve_example(page, 0)
    expect(page.locator("#rate-sample input")).to_have_value("1")
    page.locator("#samples img").nth(2).click()
    page.keyboard.press("Escape")
    expect(page.locator("#rate-sample input")).to_have_value("3")
    expect(page.locator("#rate-sample")).not_to_contain_text("0-based")
    page.locator("#rate").click()
    expect(page.locator("#rate-status")).to_contain_text("sample 3 rated")
    expect(page.locator("#rate-status")).not_to_contain_text("rating")


def _bad_files(folder: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = {"text": folder / "notes.png", "huge": folder / "huge.png", "svg": folder / "drawing.svg",
             "tiny": folder / "dot.png"}
    files["text"].write_text("these are my notes, not a picture\n")
    Image.new("L", (8000, 8000), 255).save(files["huge"])  # compresses to a few kB: under the 10 MB limit
    files["svg"].write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
                            '<rect width="40" height="40" fill="red"/></svg>')
    Image.fromarray(np.full((1, 1, 3), 200, dtype=np.uint8)).save(files["tiny"])
    return files


def test_bad_files_are_refused_at_upload_in_words(page: Page, playground: dict[str, Any], tmp_path: Path) -> None:
    files = _bad_files(tmp_path)
    _open(page, playground["url"])
    expected = {"text": "not a readable image", "huge": "at most 4096 x 4096", "svg": "not a readable image"}
    for kind, message in expected.items():
        page.locator("#slot-a1 input[type=file]").set_input_files(str(files[kind]))
        expect(page.locator(".toast-message-item").filter(has_text=message).first).to_be_visible()
        expect(page.locator("#slot-a1 img")).to_have_count(0)  # the slot is emptied, not left with a broken icon
        for close in page.locator(".toast-close").all():
            close.click()
    page.locator("#slot-a1 input[type=file]").set_input_files(str(files["tiny"]))
    expect(page.locator(".toast-message-item").filter(has_text="only 1 x 1 pixels").first).to_be_visible()
    expect(page.locator("#slot-a1 img")).to_be_visible()


CLIPPED = """el => {
  const box = el.getBoundingClientRect();
  return Array.from(el.querySelectorAll('img')).filter(img => {
    const r = img.getBoundingClientRect();
    return r.bottom > box.bottom + 1 || r.right > box.right + 1 || getComputedStyle(img).objectFit !== 'contain';
  }).length;
}"""


def test_galleries_show_every_picture_whole(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    page.locator("#advanced").get_by_text("Advanced").click()
    _set_slider(page, "n-samples", 8)
    _solve_example(page, 0)
    expect(page.locator("#n-samples input[type=number]")).to_have_value("8")  # the setting the solve was sent
    expect(page.locator("#samples img")).to_have_count(8)
    page.locator("#model-sees").click()
    expect(page.locator("#sees img")).to_have_count(3, timeout=TIMEOUT_MS * 2)
    for gallery in ("#samples", "#sees", "#candidates"):
        assert page.locator(gallery).evaluate(CLIPPED) == 0, f"{gallery} crops or hides pictures"


def test_phone_width_keeps_the_matrix_labels_and_every_tab(page: Page, playground: dict[str, Any]) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _open(page, playground["url"])
    for name in ("Play", "Bank", "Try it yourself", "Challenge", "About"):
        expect(page.get_by_role("tab", name=name)).to_be_visible()  # none hidden behind a "..." menu
    choose_example(page, 3)  # a matrix
    expect(page.locator("#cell-3 img")).to_be_visible()
    expect(page.locator("#candidates img")).to_have_count(8)
    widths = page.eval_on_selector_all("#candidates img", "imgs => imgs.map(i => i.getBoundingClientRect().width)")
    assert min(widths) >= 60, f"the candidates are slivers on a phone: {widths}"  # 8 in a row were 38 px
    tops = [page.locator(f"#cell-{k}").bounding_box()["y"] for k in (1, 2, 3, 4)]
    assert tops[0] == tops[1] == tops[2] < tops[3], f"row 1 wraps: {tops}"
    cut = page.eval_on_selector_all(".gelato-cells [data-testid='block-label']",
                                    "labels => labels.filter(l => l.scrollWidth > l.clientWidth + 1).length")
    assert cut == 0, "a cell's label is cut"
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "phone-play.png"), full_page=True)


def test_phone_width_shows_whole_sample_captions(page: Page, playground: dict[str, Any]) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _open(page, playground["url"])
    page.locator("#one-click-analogy").click()
    expect(page.locator("#samples img").first).to_be_visible(timeout=TIMEOUT_MS * 2)
    cut = page.eval_on_selector_all("#samples .caption-label",
                                    "labels => labels.filter(l => l.scrollWidth > l.clientWidth + 1).length")
    assert cut == 0, "a sample's caption is cut (the rating box asks for its number)"


def test_play_says_what_to_do_and_names_examples_in_words(page: Page, playground: dict[str, Any]) -> None:
    import re

    _open(page, playground["url"])
    expect(page.locator("#play-intro")).to_contain_text("press Solve")
    page.locator("#examples input").click()
    names = page.get_by_role("option").all_inner_texts()
    assert names and not [name for name in names if re.search(r"[0-9a-f]{12}", name)], names
    page.locator("h1").first.click()  # close the list
    page.locator("#layout").get_by_text("matrix").click()
    expect(page.locator("#expectations")).to_contain_text("What to expect")
    expect(page.locator("#expectations")).to_contain_text("matrix puzzles")


def test_one_click_fills_an_example_of_its_layout_and_solves_it(page: Page, playground: dict[str, Any]) -> None:
    _open(page, playground["url"])
    expect(page.locator("#one-click-sequence")).to_be_hidden()  # the playground's bank has no sequences
    page.locator("#layout").get_by_text("matrix").click()  # another layout on screen: the button switches it
    page.locator("#one-click-analogy").click()  # (the tiny test model's context is too short for a matrix)
    expect(page.locator("#samples img").first).to_be_visible(timeout=TIMEOUT_MS * 2)
    expect(page.locator("#layout input[value='analogy']")).to_be_checked()
    expect(page.locator("#examples input")).not_to_have_value("")
    expect(page.locator("#ranking .gelato-bar-row")).to_have_count(8)
    expect(page.locator("#pick")).to_contain_text("the answer is #")
    expect(page.locator("#solve")).to_be_enabled()
