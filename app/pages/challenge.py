"""Challenge: a timed Raven test of 12 matrix puzzles of rising difficulty, scored against the model."""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app import bank_views, bank_writes, model_picks, visitors
from app.errors import Refusal
from app.pages import play
from app.services import current

log = logging.getLogger(__name__)

CHALLENGE_SIZE = 12
RAVEN_HUMAN_ACCURACY = 84.4  # Zhang et al. 2019, RAVEN: average human accuracy (%)


def pick_challenge(
    puzzles: Sequence[Mapping[str, Any]], size: int = CHALLENGE_SIZE, seed: int | None = None
) -> list[str]:
    """Up to `size` matrix puzzle ids of rising difficulty, spread over the difficulty levels on offer."""
    matrices = [p for p in puzzles if p.get("family") == "matrix" and p.get("candidates_count", 8)]
    if not matrices:
        raise ValueError("the bank has no published matrix puzzles for a challenge")
    rng = random.Random(seed)
    shuffled = list(matrices)
    rng.shuffle(shuffled)
    by_level: dict[int, list[Mapping[str, Any]]] = {}
    for puzzle in shuffled:
        by_level.setdefault(int(puzzle.get("difficulty") or 1), []).append(puzzle)
    chosen: list[Mapping[str, Any]] = []
    while len(chosen) < size and any(by_level.values()):
        for level in sorted(by_level):  # round robin over levels keeps the spread even
            if by_level[level] and len(chosen) < size:
                chosen.append(by_level[level].pop())
    chosen.sort(key=lambda p: (int(p.get("difficulty") or 1), str(p.get("id"))))
    return [str(p["id"]) for p in chosen]


@dataclass
class ChallengeScore:
    answered: int
    correct: int
    model_correct: int
    seconds: float

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.answered if self.answered else 0.0

    @property
    def model_percent(self) -> float:
        return 100.0 * self.model_correct / self.answered if self.answered else 0.0

    def markdown(self) -> str:
        return (
            "| | accuracy |\n|---|---|\n"
            f"| You | {self.correct}/{self.answered} = {self.percent:.1f}% in {self.seconds:.0f} s |\n"
            f"| The model, same puzzles | {self.model_correct}/{self.answered} = {self.model_percent:.1f}% |\n"
            f"| People on RAVEN (published average) | {RAVEN_HUMAN_ACCURACY}% |\n"
            "| Chance (8 choices) | 12.5% |\n"
        )


def clock_html(started: float | None) -> str:
    """A clock the browser script (static/js/gelato.js) ticks every second; `started` names the run."""
    if started is None:
        return ""
    return f"<span class='gelato-clock' data-run='{started:.3f}'>⏱ 0:00</span>"


def _question(state: dict[str, Any]) -> list[Any]:
    puzzle = bank_views.fetch_puzzle(current().bank, state["ids"][state["index"]])
    candidates = [(image, f"#{index + 1}") for index, image in enumerate(puzzle["candidates"])]
    choices = [f"#{index + 1}" for index in range(len(candidates))]
    heading = f"### Puzzle {state['index'] + 1} of {len(state['ids'])} · level {puzzle['difficulty']}"
    return [heading, gr.update(value=bank_views.puzzle_picture(puzzle, cell=96), visible=True),
            gr.update(value=candidates, visible=True), gr.update(choices=choices, value=None)]


def _running(state: dict[str, Any] | None) -> bool:
    return bool(state) and state["index"] < len(state["ids"])


def start(state: dict[str, Any] | None = None, seed: int | None = None) -> list[Any]:
    """Pick the puzzles and start the clock; during a run, the first press only asks to press again."""
    from puzzles.bank import repository

    if _running(state) and not state.get("restart_asked"):
        answered = state["index"]
        note = (f"A challenge is under way ({answered} of {len(state['ids'])} answered). "
                "Press **Start** again to drop it and begin a new one.")
        return [{**state, "restart_asked": True}, *[gr.skip()] * 4, note, gr.skip(), gr.skip()]
    items, _ = repository.list_puzzles(current().bank, family="matrix", per_page=200)
    summaries = [{"id": i.id, "family": i.family, "difficulty": i.difficulty}
                 for i in items if i.candidate_hashes and i.answer_index is not None]
    try:
        ids = pick_challenge(summaries, seed=seed)
    except ValueError as error:
        raise Refusal(str(error)) from error
    state = {"ids": ids, "index": 0, "answers": [], "started": time.time()}
    return [state, *_question(state), "", gr.update(visible=True), clock_html(state["started"])]


def _verdict(correct: bool, chosen: int, answer_index: int | None) -> str:
    if correct:
        return f"✔ #{chosen + 1} is right."
    return f"✘ #{chosen + 1} is not it; the answer was #{(answer_index or 0) + 1}."


def _final(state: dict[str, Any], pick_of: Callable[[dict[str, Any]], int | None]) -> str:
    """The end screen: the last verdict, the score table next to the model's and one line per puzzle; the model's
    picks come from `pick_of` (None where it has none)."""
    services = current()
    lines, model_correct = [], 0
    for number, (puzzle_id, (correct, chosen)) in enumerate(zip(state["ids"], state["answers"], strict=True)):
        puzzle = bank_views.fetch_puzzle(services.bank, puzzle_id)
        pick = pick_of(puzzle)
        model_correct += int(pick is not None and pick == puzzle["answer_index"])
        model = "—" if pick is None else f"#{pick + 1}"
        lines.append(f"| {number + 1} | level {puzzle['difficulty']} | #{chosen + 1} {'✔' if correct else '✘'} | "
                     f"#{puzzle['answer_index'] + 1} | {model} |")
    table = "| | | you | answer | model |\n|---|---|---|---|---|\n" + "\n".join(lines)
    right = sum(correct for correct, _ in state["answers"])
    score = ChallengeScore(len(state["answers"]), right, model_correct, state["seconds"])
    return f"{state['verdict']}\n\n{score.markdown()}\n\n{table}"


def _known_pick(puzzle: dict[str, Any]) -> int | None:
    services = current()
    return model_picks.known_model_pick(services.bank, services.loaded_bundle(), puzzle["id"])


def answer(visitor_id: str | None, state: dict[str, Any] | None, choice: str) -> list[Any]:
    """Record one answer and say at once whether it was right; show the next puzzle, or the final score next
    to the model's picks that the bank knows (`model_final` fills in the rest on the model's queue)."""
    if not _running(state):
        raise Refusal("press Start to begin a challenge")
    if not choice:
        raise Refusal("pick a candidate (#1 to #8) before pressing Next")
    visitor_id = visitors.ensure_visitor_id(visitor_id)
    services = current()
    try:
        index = bank_views.choice_index(choice)
        puzzle_id = state["ids"][state["index"]]
        correct = bank_writes.record_attempt(services.bank, visitor_id, puzzle_id, index, None)
        answer_index = bank_views.fetch_puzzle(services.bank, puzzle_id)["answer_index"]
    except ValueError as error:
        raise Refusal(str(error)) from error
    verdict = _verdict(correct, index, answer_index)
    state = {**state, "index": state["index"] + 1, "answers": [*state["answers"], (bool(correct), index)],
             "restart_asked": False}
    if state["index"] < len(state["ids"]):
        return [state, *_question(state), f"{verdict} {state['index']} answered.", gr.update(visible=True),
                visitor_id, gr.skip()]
    state = {**state, "seconds": time.time() - state["started"], "verdict": verdict}
    right = sum(correct for correct, _ in state["answers"])
    return [state, f"### Done: {right} of {len(state['answers'])} right", gr.update(value=None, visible=False),
            gr.update(value=None, visible=False), gr.update(choices=[], value=None), _final(state, _known_pick),
            gr.update(visible=False), visitor_id, ""]


def model_final(state: dict[str, Any] | None, progress: gr.Progress = gr.Progress()) -> Any:  # noqa: B008
    """Once a challenge is over: the model takes the puzzles whose pick the bank does not know, and the end screen
    shows all its picks. Nothing changes while a challenge is under way."""
    if not state or "seconds" not in state or _running(state):
        return gr.skip()
    services = current()
    try:
        bundle = services.bundle()
    except RuntimeError as error:
        log.warning("model unavailable for the challenge: %s", error)
        return gr.skip()

    def pick_of(puzzle: dict[str, Any]) -> int | None:
        progress(state["ids"].index(puzzle["id"]) / len(state["ids"]), desc="the model takes the same test")
        known = model_picks.known_model_pick(services.bank, bundle, puzzle["id"])
        if known is not None:
            return known
        try:
            return model_picks.model_pick(services.bank, bundle, puzzle)
        except (RuntimeError, ValueError) as error:  # a prompt longer than the model's context
            log.warning("model could not answer %s: %s", puzzle["id"], error)
            return None

    return _final(state, pick_of)


def build(visitor: gr.BrowserState) -> None:
    state = gr.State(None)
    gr.Markdown(f"Twelve Raven-style matrices, easiest first, against the clock. Pick the cell that completes each "
                f"3x3 grid. People average {RAVEN_HUMAN_ACCURACY}% on RAVEN; chance is 12.5%.")
    with gr.Row():
        start_button = gr.Button("Start", variant="primary", elem_id="challenge-start")
        clock = gr.HTML(elem_id="challenge-clock")
    heading = gr.Markdown(elem_id="challenge-heading")
    with gr.Row():
        prompt = gr.Image(label="Puzzle", interactive=False, format="png", height=320, elem_id="challenge-prompt",
                          visible=False)
        candidates = gr.Gallery(label="Candidates", columns=4, height="auto", object_fit="contain", format="png",
                                allow_preview=False, interactive=False, elem_id="challenge-candidates", visible=False)
    with gr.Row(visible=False) as answer_row:
        choice = gr.Radio(bank_views.ANSWER_CHOICES, label="Your answer", elem_id="challenge-choice")
        next_button = gr.Button("Next", variant="primary", elem_id="challenge-next")
    result = gr.Markdown(elem_id="challenge-result")
    start_button.click(start, state, [state, heading, prompt, candidates, choice, result, answer_row, clock],
                       api_name="challenge_start")
    answered = next_button.click(answer, [visitor, state, choice],
                                 [state, heading, prompt, candidates, choice, result, answer_row, visitor, clock],
                                 api_name="challenge_answer", concurrency_id=play.VISITOR_CONCURRENCY,
                                 concurrency_limit=play.VISITOR_CONCURRENCY_LIMIT, show_progress_on=[result])
    answered.success(model_final, state, result, api_visibility="private", concurrency_id=play.MODEL_CONCURRENCY,
                     concurrency_limit=play.MODEL_CONCURRENCY_LIMIT, show_progress="hidden")
    play.settle_on_failure(answered, [result])
