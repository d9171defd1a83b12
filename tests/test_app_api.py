"""The playground driven through gradio_client against the app served in-process (tiny bundle, real bank)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app import bank_views, prompts, visitors
from puzzles.bank import repository
from puzzles.images import png_bytes

N_SLOTS = len(prompts.ALL_SLOTS)


@pytest.fixture(scope="module")
def client(playground: dict[str, Any]) -> Client:
    return Client(playground["url"], verbose=False)


def _analogy_files(playground: dict[str, Any], tmp_path: Path) -> tuple[list[str], list[str], int]:
    """PNG files of the first analogy in the bank: its 3 panels, its candidates, and the answer index."""
    puzzle = bank_views.fetch_puzzle(playground["bank"], playground["puzzle_ids"][0])
    def write(image: Any, name: str) -> str:
        path = tmp_path / f"{name}.png"
        path.write_bytes(png_bytes(image))
        return str(path)
    panels = [write(image, f"panel{i}") for i, image in enumerate(puzzle["panels"])]
    candidates = [write(image, f"candidate{i}") for i, image in enumerate(puzzle["candidates"])]
    return panels, candidates, puzzle["answer_index"]


def _slot_args(panels: list[str]) -> list[Any]:
    """Values for every slot in prompts.ALL_SLOTS order: A1, A1', B filled, the rest empty."""
    values: list[Any] = [None] * N_SLOTS
    for name, path in zip(("slot-a1", "slot-a1p", "slot-b"), panels, strict=True):
        values[prompts.ALL_SLOTS.index(name)] = handle_file(path)
    return values


def _solve(client: Client, panels: list[str], seed: int, n: int = 4, candidates: list[str] | None = None) -> tuple:
    gallery = [{"image": handle_file(path), "caption": None} for path in candidates or []]
    return client.predict("analogy", "1", *_slot_args(panels), gallery, n, 1.0, 0, 1.0, seed, api_name="/solve")


def test_solve_returns_n_samples_with_the_settings_used(client: Client, playground: dict, tmp_path: Path) -> None:
    panels, _, _ = _analogy_files(playground, tmp_path)
    samples, settings_text, _ranking, _pick, sees, sample_number, _status = _solve(client, panels, seed=7)
    assert len(samples) == 4
    assert all(Image.open(item["image"]).format == "PNG" for item in samples)
    assert "seed 7" in settings_text and "samples 4" in settings_text
    visible = re.sub(r"<[^>]*>", "", settings_text)  # what a visitor reads; the exact bundle id is a tooltip
    assert re.search(r"model tiny-test \(trained \d{1,2} [A-Z][a-z]{2} \d{4}\)", visible), visible
    assert "@" not in visible and "bundle" not in visible
    assert re.search(r'title="bundle tiny-test@\w+"', settings_text), settings_text
    assert not sees and sample_number == 1  # a new solve clears what the model saw of an older prompt
    again, *_ = _solve(client, panels, seed=7)
    assert [Image.open(a["image"]).tobytes() for a in samples] == [Image.open(b["image"]).tobytes() for b in again]


def test_solve_with_candidates_ranks_them_and_names_the_pick(client: Client, playground: dict, tmp_path: Path) -> None:
    panels, candidates, _ = _analogy_files(playground, tmp_path)
    _, _, ranking, pick_text, *_ = _solve(client, panels, seed=1, n=2, candidates=candidates)
    assert ranking["value"].count("data-candidate=") == len(candidates)
    assert "Model's pick: candidate #" in pick_text


def test_score_ranks_candidates(client: Client, playground: dict, tmp_path: Path) -> None:
    panels, candidates, _ = _analogy_files(playground, tmp_path)
    gallery = [{"image": handle_file(path), "caption": None} for path in candidates]
    ranking, pick_text = client.predict("analogy", "1", *_slot_args(panels), gallery, api_name="/score")
    picked = re.findall(r"data-candidate='(\d+)'[^>]*data-picked='true'", ranking["value"])
    assert ranking["value"].count("data-candidate=") == len(candidates) and len(picked) == 1
    assert f"candidate #{picked[0]}" in pick_text


def test_solve_with_an_empty_slot_names_it(client: Client, playground: dict, tmp_path: Path) -> None:
    panels, _, _ = _analogy_files(playground, tmp_path)
    slots = _slot_args(panels)
    slots[prompts.ALL_SLOTS.index("slot-b")] = None
    with pytest.raises(Exception, match="empty: B"):
        client.predict("analogy", "1", *slots, None, 4, 1.0, 0, 1.0, 0, api_name="/solve")


def test_rating_twice_updates_one_row(client: Client, playground: dict, tmp_path: Path) -> None:
    panels, _, _ = _analogy_files(playground, tmp_path)
    _solve(client, panels, seed=3)
    visitor = visitors.new_visitor_id()
    status, returned_visitor = client.predict(visitor, 2, "up", False, api_name="/rate")  # numbered from 1
    assert "sample 2 rated" in status and returned_visitor == visitor
    assert "rating" not in status.split("<!--")[0], "the visible message names no internal id"
    client.predict(visitor, 2, "down", True, api_name="/rate")
    rows = repository.list_ratings(playground["bank"], visitor=visitor)
    assert len(rows) == 1
    assert rows[0]["score"] == -1 and rows[0]["is_correct"] is True and rows[0]["sample_index"] == 1
    assert rows[0]["bundle_id"].startswith("tiny-test@") and rows[0]["settings"]["seed"] == 3


def test_submit_saves_a_pending_puzzle(client: Client, playground: dict, tmp_path: Path) -> None:
    panels, _, _ = _analogy_files(playground, tmp_path)
    visitor = visitors.new_visitor_id()
    status, _ = client.predict(visitor, "analogy", "1", *_slot_args(panels), None, handle_file(panels[0]),
                               "My analogy", api_name="/submit")
    visible, _, hidden = status.partition("<!--")  # the id is for programs, out of a visitor's sight
    assert "“My analogy” is waiting for a curator's review" in visible
    puzzle_id = re.search(r"\(puzzle (\w+)\)", hidden).group(1)
    assert puzzle_id not in visible
    stored = repository.get_puzzle(playground["bank"], puzzle_id)
    assert stored.status == "pending" and stored.submitted_by == visitor and stored.puzzle.title == "My analogy"
    assert stored.puzzle.answer is not None


def test_attempt_records_and_reveals(client: Client, playground: dict) -> None:
    bank = playground["bank"]
    puzzle_id = playground["puzzle_ids"][1]
    answer_index = bank_views.fetch_puzzle(bank, puzzle_id)["answer_index"]
    visitor = visitors.new_visitor_id()
    choice = f"#{answer_index + 1}"
    verdict, truth, _generated, stats, *_ = client.predict(visitor, puzzle_id, choice, api_name="/attempt")
    assert "Right" in verdict and f"The answer is **#{answer_index + 1}**" in verdict and truth is not None
    verdict, _generated, stats = client.predict(puzzle_id, verdict, api_name="/attempt_model")  # what follows
    assert "The model picked" in verdict and f"The answer is **#{answer_index + 1}**" in verdict
    client.predict(visitor, puzzle_id, bank_views.GAVE_UP, api_name="/attempt")
    summary = repository.puzzle_stats(bank, puzzle_id)
    assert summary["attempts"] >= 2 and summary["gave_up"] >= 1
    assert summary["model_results"], "the model's pick is remembered for the 'model gets it wrong' filter"


def test_challenge_runs_to_a_score_next_to_the_model(client: Client, playground: dict) -> None:
    heading, _prompt, candidates = client.predict(api_name="/challenge_start")[:3]
    assert "Puzzle 1 of 3" in heading and len(candidates["value"]) == 8  # the test bank holds three matrices
    visitor = visitors.new_visitor_id()
    for _ in range(3):
        outputs = client.predict(visitor, "#1", api_name="/challenge_answer")
    result = outputs[4]  # heading, prompt, candidates, choice, result, visitor
    assert "You" in result and "The model, same puzzles" in result and "84.4%" in result
