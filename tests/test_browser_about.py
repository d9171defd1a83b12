"""The About page in a real browser, served with the shipped bundle's card (the model itself is never loaded)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.pages import about
from puzzles.bank import connect
from tests.conftest import second_app

SHIPPED = Path(__file__).resolve().parents[1] / "engine" / "bundles" / "default"
SHOTS = Path("/tmp/shots")


@pytest.fixture(scope="module")
def shipped_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("about")
    bank = connect(f"sqlite:///{data_dir / 'gelato.db'}")
    with second_app(data_dir, SHIPPED, bank) as url:
        yield url
    bank.close()


def _broken_images(page: Page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector + " img", "imgs => imgs.filter(i => !i.complete || "
                                     "i.naturalWidth === 0).map(i => i.getAttribute('src'))")


def test_about_summary_first_details_folded_every_image_shown(page: Page, shipped_app: str) -> None:
    page.goto(shipped_app)
    page.get_by_role("tab", name="About").click()
    summary = page.locator("#about-summary")
    expect(summary).to_contain_text("Status:")
    expect(summary.locator("table")).to_contain_text("picks the right candidate")
    expect(summary.locator("table")).to_contain_text("sequence")
    expect(summary.locator("img")).to_have_count(1)
    expect(page.locator("#about-card")).not_to_be_visible()  # folded until asked for
    page.locator("#about-card-accordion").get_by_text("Model card").click()
    page.locator("#about-evaluation-accordion").get_by_text("Every evaluation measure").click()
    page.locator("#about-sentence").get_by_text("How a visual sentence is built").click()
    expect(page.locator("#about-sentence")).to_contain_text("so that a copy of that panel is not favoured")
    expect(page.locator("#about-sentence")).to_contain_text("when the candidate is read as the first example")
    expect(page.locator("#about-card img")).to_have_count(len(about.card_images(SHIPPED)))
    page.wait_for_function("() => Array.from(document.querySelectorAll('#tab-about img')).every(i => i.complete)")
    assert _broken_images(page, "#tab-about") == []
    assert page.get_by_text("Model card", exact=False).count() == 1  # one heading, not the card's own title too
    table = page.locator("#about-evaluation table")
    expect(table).to_contain_text("matrix: center")
    expect(table).not_to_contain_text("families /")
    expect(table).not_to_contain_text("None")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "about.png"), full_page=True)
    page.locator("#about-sentence").screenshot(path=str(SHOTS / "about-sentence.png"))


def test_about_tables_stay_on_a_phone_screen(page: Page, shipped_app: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(shipped_app)
    page.get_by_role("tab", name="About").click()
    page.locator("#about-card-accordion").get_by_text("Model card").click()
    page.locator("#about-evaluation-accordion").get_by_text("Every evaluation measure").click()
    expect(page.locator("#about-evaluation table")).to_contain_text("tokenizer round trip")
    past_edge = page.eval_on_selector_all("#tab-about table", """tables => tables
        .filter(t => t.getBoundingClientRect().right > document.documentElement.clientWidth)
        .map(t => t.innerText.slice(0, 40))""")
    assert past_edge == []  # a table wider than the screen scrolls inside its own box
    hidden = page.locator("#about-evaluation table").evaluate("t => t.scrollWidth > t.clientWidth")
    reached = page.locator("#about-evaluation table").evaluate("t => { t.scrollLeft = t.scrollWidth; "
                                                                "return t.scrollLeft > 0; }")
    assert not hidden or reached, "the evaluation table's last columns are out of reach"


def test_card_pictures_are_found_and_served_links(tmp_path: Path) -> None:
    names = sorted(path.name for path in about.card_images(SHIPPED))
    assert "training_curve.png" in names and "failures_matrix.png" in names
    card = about.model_card(SHIPPED)
    assert "](training_curve.png)" not in card and not card.startswith("# ")
    assert about.model_card(tmp_path).startswith("_No model card")


def test_play_sets_expectations_from_the_shipped_evaluation(page: Page, shipped_app: str) -> None:
    page.goto(shipped_app)
    analogy = json.loads((SHIPPED / "manifest.json").read_text())["metrics"]["families"]["analogy"]
    picks = f"picks the right candidate {analogy['multiple_choice_accuracy']:.0%}"  # the first layout's family
    expect(page.locator("#expectations")).to_contain_text(picks)
