"""ARC grid puzzles played by people: an answer-grid editor, three tries with instant feedback, next / random task,
and the model's answer beside the person's once the round is over (the conventions of the public ARC testing
interface).

The editor is drawn in the browser by static/js/gelato.js from a `.gelato-arc` element carrying the test input;
the grid a person builds comes back as JSON and is checked here, on the server, against the stored answer.
"""
from __future__ import annotations

import html
import json
import logging
import time
from typing import Any

import gradio as gr
import numpy as np

from app import bank_views, bank_writes, model_picks, solving, visitors
from app.errors import Refusal
from app.pages import play
from app.services import current
from puzzles.generators import grid as arc_grid

log = logging.getLogger(__name__)

TRIES = 3  # as in the ARC testing interface
PICTURE_SIZE = 192  # the person's and the model's grids, side by side


def test_input(puzzle: dict[str, Any]) -> list[list[int]]:
    """The grid the person transforms: read back exactly from the puzzle's last panel."""
    return arc_grid.read_grid(puzzle["panels"][-1])


def answer_grid(puzzle: dict[str, Any]) -> list[list[int]] | None:
    return (puzzle.get("meta") or {}).get("answer_grid")


def editor_html(input_grid: list[list[int]] | None) -> str:
    """The element the browser script turns into the editor (empty when the puzzle is not a grid)."""
    if input_grid is None:
        return ""
    data = html.escape(json.dumps(input_grid), quote=True)
    return f"<div class='gelato-arc' data-input='{data}'>Loading the grid editor...</div>"


def parse_grid(text: str | None) -> np.ndarray:
    """The person's grid from the editor's JSON; ValueError in words when it is not a grid of ARC colours."""
    unreadable = ValueError("the answer grid could not be read; reload the page and try again")
    if not isinstance(text, str | None):
        raise unreadable
    try:
        value = json.loads(text or "")
    except (json.JSONDecodeError, RecursionError) as error:
        raise unreadable from error
    if not isinstance(value, list) or not value or len(value) > arc_grid.MAX_GRID_SIDE:
        raise ValueError(f"an answer grid has 1 to {arc_grid.MAX_GRID_SIDE} rows")
    if any(not isinstance(row, list) or len(row) > arc_grid.MAX_GRID_SIDE for row in value):
        raise ValueError(f"an answer grid has 1 to {arc_grid.MAX_GRID_SIDE} columns")
    return arc_grid.check_grid(value, "your answer grid")


def feedback(right: bool, tries_left: int, size_wrong: bool) -> str:
    if right:
        return "## ✔ Right!"
    hint = " The size is wrong too." if size_wrong else ""
    if tries_left:
        return f"## ✘ Not yet.{hint} {tries_left} {'try' if tries_left == 1 else 'tries'} left."
    return f"## ✘ Not this time.{hint} No tries left: here is the answer."


def picture(grid: Any) -> np.ndarray:
    return arc_grid.render_grid(grid, PICTURE_SIZE)


def model_answer(puzzle: dict[str, Any]) -> tuple[np.ndarray | None, str]:
    """The model's generated answer for the puzzle and a line about it (right, wrong, or why there is none)."""
    try:
        settings = solving.SampleSettings(n_samples=1, temperature=1.0, seed=0)
        image = model_picks.model_answer(current().bundle(), puzzle, settings)
    except (RuntimeError, ValueError) as error:
        log.warning("model unavailable for grid puzzle %s: %s", puzzle["id"], error)
        return None, f"The model could not answer: {error}"
    try:
        read = arc_grid.read_grid(image)
    except ValueError:
        return image, "The model's answer is not a readable grid."
    right = read == answer_grid(puzzle)
    return picture(read), f"The model's answer is {'right' if right else 'wrong'}."


# --- handlers -------------------------------------------------------------------------------------------------


def open_grid(puzzle_id: str | None) -> list[Any]:
    """When Try it yourself shows a puzzle: for a grid, the editor with a fresh set of tries instead of the
    candidate choice; for any other puzzle, the candidate choice."""
    puzzle = _published_or_error(puzzle_id) if puzzle_id else None
    is_grid = bool(puzzle) and puzzle["family"] == "grid" and answer_grid(puzzle) is not None
    editor = editor_html(test_input(puzzle)) if is_grid else ""
    note = (f"Build the output grid for the test input: set its size (or copy the input), pick a colour and "
            f"paint cells (or flood-fill). You have {TRIES} tries.") if is_grid else ""
    others = gr.update(visible=not is_grid)  # the candidate choice and its reveal
    return [gr.update(visible=is_grid), others, others, others, editor, note, TRIES, None, None, None, None,
            gr.update(interactive=True)]


def check(visitor_id: str | None, puzzle_id: str | None, grid_json: str | None, tries_left: int | None,
          started: float | None) -> list[Any]:
    """One try: right or wrong at once; the round ends when it is right or the tries are used up, and then it
    is recorded once and the answer is shown (the model's answer follows in `model_after_round`)."""
    visitor_id = visitors.ensure_visitor_id(visitor_id)
    tries_left = TRIES if tries_left is None else int(tries_left)  # a State: the server's own value
    if not puzzle_id:
        raise Refusal("pick a grid puzzle in the Bank first")
    if tries_left <= 0:
        raise Refusal("this round is over: press Next task or Random task")
    try:  # an unpublished puzzle's answer is never checked nor shown
        puzzle = bank_views.fetch_published(current().bank, puzzle_id)
        expected = answer_grid(puzzle)
        if expected is None:
            raise ValueError("this puzzle has no answer grid to check against")
        mine = parse_grid(grid_json)
    except ValueError as error:
        raise Refusal(str(error)) from error
    right = mine.tolist() == expected
    tries_left -= 1
    size_wrong = list(mine.shape) != [len(expected), len(expected[0])]
    over = right or tries_left == 0
    outputs = [feedback(right, tries_left, size_wrong), tries_left, picture(mine), None, None,
               gr.update(interactive=not over), visitor_id]
    if over:
        seconds = max(0.0, time.time() - started) if started else None
        try:  # choice 0: a grid was answered (None would mean "gave up"); correctness comes from the check
            bank_writes.record_attempt(current().bank, visitor_id, puzzle_id, 0, seconds, correct=right)
        except ValueError as error:
            raise Refusal(str(error)) from error
        outputs[3] = picture(expected)
    return outputs


def model_after_round(puzzle_id: str | None, tries_left: int | None, verdict: str) -> list[Any]:
    """Once a round is over (right, or no tries left): the model's answer beside the person's, on the model's
    queue; nothing while the round goes on."""
    verdict = verdict or ""
    if not puzzle_id or (tries_left and not verdict.startswith(feedback(True, 0, False))):
        return [gr.skip(), gr.skip()]
    puzzle = _published_or_error(puzzle_id)
    image, line = model_answer(puzzle)
    return [f"{verdict}\n\n{line}", image]


def neighbour(puzzle_id: str | None, family: str | None, step: int) -> str:
    """The id after (`step` 1) the given puzzle among published ones of its family, wrapping round."""
    from puzzles.bank import repository

    ids: list[str] = []
    for page in range(100):  # the bank lists at most 200 a page
        items, total = repository.list_puzzles(current().bank, family=family, page=page, per_page=200)
        ids += [item.id for item in items]
        if len(ids) >= total or not items:
            break
    if not ids:
        raise Refusal("the bank has no published puzzles of this kind")
    index = ids.index(puzzle_id) if puzzle_id in ids else -1
    return ids[(index + step) % len(ids)]


def _published_or_error(puzzle_id: str) -> dict[str, Any]:
    try:
        return bank_views.fetch_published(current().bank, puzzle_id)
    except ValueError as error:
        raise Refusal(str(error)) from error


def family_of(puzzle_id: str | None) -> str | None:
    """The family of the puzzle on screen: a published one's only (no other puzzle's existence is told)."""
    return _published_or_error(puzzle_id)["family"] if puzzle_id else None


def next_id(puzzle_id: str | None) -> str:
    return neighbour(puzzle_id, family_of(puzzle_id), 1)


def random_id(puzzle_id: str | None) -> str:
    family = family_of(puzzle_id)
    for _ in range(5):  # another puzzle than the one on screen, when there is one
        chosen = bank_views.random_puzzle_id(current().bank, family=family)
        if chosen != puzzle_id:
            break
    if chosen is None:
        raise Refusal("the bank has no published puzzles of this kind")
    return chosen


# --- layout ---------------------------------------------------------------------------------------------------

READ_EDITOR = "(...args) => { args[2] = window.gelatoArcGrid ? window.gelatoArcGrid() : ''; return args; }"


def build(visitor: gr.BrowserState, puzzle_id: gr.Textbox, started: gr.State) -> dict[str, Any]:
    """The grid group of Try it yourself (hidden until a grid puzzle is shown)."""
    tries = gr.State(TRIES)
    with gr.Group(visible=False, elem_id="arc-group") as group:
        note = gr.Markdown(elem_id="arc-note")
        editor = gr.HTML(elem_id="arc-editor")
        check_button = gr.Button("Check my answer", variant="primary", elem_id="arc-check")
        verdict = gr.Markdown(elem_id="arc-verdict")
        with gr.Row():
            mine = gr.Image(label="Your answer", elem_id="arc-mine", interactive=False, format="png", height=220)
            truth = gr.Image(label="The answer", elem_id="arc-truth", interactive=False, format="png", height=220)
            models = gr.Image(label="The model's answer", elem_id="arc-model", interactive=False, format="png",
                              height=220)
    check_outputs = [verdict, tries, mine, truth, models, check_button, visitor]
    checked = check_button.click(check, [visitor, puzzle_id, editor, tries, started], check_outputs, js=READ_EDITOR,
                                 api_name="grid_check", concurrency_id=play.VISITOR_CONCURRENCY,
                                 concurrency_limit=play.VISITOR_CONCURRENCY_LIMIT)
    play.settle_on_failure(checked, check_outputs)
    modelled = checked.success(model_after_round, [puzzle_id, tries, verdict], [verdict, models],
                               api_visibility="private", concurrency_id=play.MODEL_CONCURRENCY,
                               concurrency_limit=play.MODEL_CONCURRENCY_LIMIT, show_progress_on=[models])
    play.settle_on_failure(modelled, [verdict, models])
    return {"group": group, "editor": editor, "note": note, "tries": tries, "verdict": verdict, "mine": mine,
            "truth": truth, "models": models, "check_button": check_button}


def open_outputs(parts: dict[str, Any], choice_row: Any, candidates: Any, reveal_row: Any) -> list[Any]:
    """Outputs of `open_grid`, in its order."""
    return [parts["group"], choice_row, candidates, reveal_row, parts["editor"], parts["note"], parts["tries"],
            parts["verdict"], parts["mine"], parts["truth"], parts["models"], parts["check_button"]]
