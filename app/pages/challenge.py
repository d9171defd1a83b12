"""Challenge: a timed Raven test of 12 matrix puzzles of rising difficulty, scored against the model."""
from __future__ import annotations

import logging
import time
from typing import Any

import gradio as gr

from app import logic
from app.services import current

log = logging.getLogger(__name__)


def _question(state: dict[str, Any]) -> list[Any]:
    puzzle = logic.fetch_puzzle(current().bank, state["ids"][state["index"]])
    candidates = [(image, f"#{index + 1}") for index, image in enumerate(puzzle["candidates"])]
    choices = [f"#{index + 1}" for index in range(len(candidates))]
    heading = f"### Puzzle {state['index'] + 1} of {len(state['ids'])} · level {puzzle['difficulty']}"
    return [heading, logic.puzzle_picture(puzzle, cell=96), candidates, gr.update(choices=choices, value=None)]


def start(seed: int | None = None) -> list[Any]:
    """Pick the puzzles and start the clock."""
    from puzzles.bank import repository

    items, _ = repository.list_puzzles(current().bank, family="matrix", per_page=200)
    summaries = [{"id": i.id, "family": i.family, "difficulty": i.difficulty}
                 for i in items if i.candidate_hashes and i.answer_index is not None]
    try:
        ids = logic.pick_challenge(summaries, seed=seed)
    except ValueError as error:
        raise gr.Error(str(error)) from error
    state = {"ids": ids, "index": 0, "answers": [], "started": time.time()}
    return [state, *_question(state), "", gr.update(visible=True)]


def answer(visitor_id: str | None, state: dict[str, Any] | None, choice: str,
           progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
    """Record one answer; show the next puzzle, or the final score next to the model's."""
    if not state or state["index"] >= len(state["ids"]):
        raise gr.Error("press Start to begin a challenge")
    visitor_id = logic.ensure_visitor_id(visitor_id)
    services = current()
    try:
        index = logic.choice_index(choice)
        puzzle_id = state["ids"][state["index"]]
        correct = logic.record_attempt(services.bank, visitor_id, puzzle_id, index, None)
    except ValueError as error:
        raise gr.Error(str(error)) from error
    state = {**state, "index": state["index"] + 1, "answers": [*state["answers"], bool(correct)]}
    if state["index"] < len(state["ids"]):
        return [state, *_question(state), f"{state['index']} answered", gr.update(visible=True), visitor_id]
    seconds = time.time() - state["started"]
    model_correct = 0
    try:
        bundle = services.bundle()
        for number, puzzle_id in enumerate(state["ids"]):
            progress(number / len(state["ids"]), desc="the model takes the same test")
            puzzle = logic.fetch_puzzle(services.bank, puzzle_id)
            model_correct += int(logic.model_pick(services.bank, bundle, puzzle) == puzzle["answer_index"])
    except (RuntimeError, ValueError) as error:  # no bundle, or a prompt longer than the model's context
        log.warning("model unavailable for the challenge: %s", error)
    score = logic.ChallengeScore(len(state["answers"]), sum(state["answers"]), model_correct, seconds)
    return [state, "### Done", None, None, gr.update(choices=[], value=None), score.markdown(),
            gr.update(visible=False), visitor_id]


def build(visitor: gr.BrowserState) -> None:
    state = gr.State(None)
    gr.Markdown(f"Twelve Raven-style matrices, easiest first. Pick the cell that completes each 3x3 grid. "
                f"People average {logic.RAVEN_HUMAN_ACCURACY}% on RAVEN; chance is 12.5%.")
    start_button = gr.Button("Start", variant="primary", elem_id="challenge-start")
    heading = gr.Markdown(elem_id="challenge-heading")
    with gr.Row():
        prompt = gr.Image(label="Puzzle", interactive=False, format="png", height=320, elem_id="challenge-prompt")
        candidates = gr.Gallery(label="Candidates", columns=4, height=320, format="png", allow_preview=False,
                                interactive=False, elem_id="challenge-candidates")
    with gr.Row(visible=False) as answer_row:
        choice = gr.Radio(logic.ANSWER_CHOICES, label="Your answer", elem_id="challenge-choice")
        next_button = gr.Button("Next", variant="primary", elem_id="challenge-next")
    result = gr.Markdown(elem_id="challenge-result")
    start_button.click(start, None, [state, heading, prompt, candidates, choice, result, answer_row],
                       api_name="challenge_start")
    next_button.click(answer, [visitor, state, choice],
                      [state, heading, prompt, candidates, choice, result, answer_row, visitor],
                      api_name="challenge_answer", concurrency_id="model", concurrency_limit=1)
