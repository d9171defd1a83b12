"""In a real browser: a curator logs in, approves a pending submission, and a visitor then finds it in the
public bank; a visitor who opens /curate lands on the login form instead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from puzzles.bank import repository
from tests.test_curator_access import CURATOR, PASSWORD, serve_full_app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from serve_full_app(tmp_path_factory.mktemp("curate-browser"))


def test_a_visitor_opening_curate_gets_the_login_form(page: Page, served: dict[str, Any]) -> None:
    page.goto(f"{served['url']}/curate/")
    expect(page.locator("#login-submit")).to_be_visible()
    page.fill("#name", CURATOR)
    page.fill("#password", "not the password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("Wrong name or password")


def test_curator_approves_a_submission_and_the_public_bank_shows_it(page: Page, served: dict[str, Any]) -> None:
    pending = served["ids"]["pending"]
    page.goto(f"{served['url']}/curate/")
    page.fill("#name", CURATOR)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#curator-name")).to_contain_text(f"Logged in as {CURATOR}")
    expect(page.locator("#queue-table")).to_contain_text(pending)
    expect(page.locator("#details")).to_contain_text(pending)  # the first queued puzzle is inspected
    page.click("#approve")
    expect(page.locator("#review-status")).to_contain_text(f"approve: {pending} done")
    expect(page.locator("#queue-table")).not_to_contain_text(pending)
    assert repository.get_puzzle(served["bank"], pending).status == "published"

    page.goto(f"{served['url']}/")
    page.get_by_role("tab", name="Bank").click()
    title = repository.get_puzzle(served["bank"], pending).puzzle.title
    expect(page.locator("#bank-gallery")).to_contain_text(title)  # captions name puzzles in words, not ids


def test_an_empty_queue_shows_empty_boxes_not_an_error(page: Page, served: dict[str, Any]) -> None:
    page.goto(f"{served['url']}/curate/")
    page.fill("#name", CURATOR)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#curator-name")).to_contain_text(f"Logged in as {CURATOR}")
    page.get_by_text("rejected", exact=True).click()  # a queue with nothing in it: the inspected puzzle goes
    expect(page.locator("#details")).to_contain_text("Choose a puzzle in Inspect")
    page.wait_for_timeout(1000)
    assert page.locator(".toast-message-item").count() == 0  # before: "choose a puzzle to inspect" in a toast
