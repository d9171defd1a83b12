"""Bank: browse published puzzles with filters and pages; open one in Play or try it yourself."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import gradio as gr

from app import bank_views, bank_writes, model_picks, solving, visitors
from app.errors import Refusal
from app.pages import arc, play
from app.services import current
from puzzles.generators.matrix import LAYOUTS as MATRIX_LAYOUTS

log = logging.getLogger(__name__)

OPEN_OUTPUTS = 12  # what open_try returns: the Try it yourself outputs, then the tabs
FAMILY_CHOICES = ["any", "matrix", "analogy", "sequence", "grid"]  # the families the bank's sources make


# --- handlers -------------------------------------------------------------------------------------------------


PAGE_BOUND = 10**6  # past any bank's last page (which is then shown), and within what a database can offset


def browse(family: str, layout: str, tag: str, low: int, high: int, model_wrong: bool, page: int) -> list[Any]:
    """One page of the gallery with the ids behind it and a 'page x of y' line; a page past either end shows
    the nearest one and says so."""
    asked = min(max(1, int(page or 1)), PAGE_BOUND)
    try:
        filters = bank_views.puzzle_filter(family, layout, tag, low, high, model_wrong)
        pictures, ids, pages = bank_views.bank_page(current().bank, filters, asked - 1)
        shown = min(asked, pages)
        if shown != asked:
            pictures, ids, pages = bank_views.bank_page(current().bank, filters, shown - 1)
    except ValueError as error:
        raise Refusal(str(error)) from error
    note = f"Page {shown} of {pages}" + ("" if ids else " — no puzzle matches these filters")
    if shown != int(page or 1):
        note += f" (there is no page {int(page or 0)})"
    return [pictures, ids, note, gr.update(value=shown), None]


def first_page(*filters: Any) -> list[Any]:
    return browse(*filters, 1)


def select_puzzle(ids: list[str], event: gr.SelectData) -> tuple[str, str]:
    """Remember the clicked puzzle and say which it is (in words, as the gallery names it), so the buttons below
    act on a visible choice."""
    puzzle_id = ids[int(event.index)]
    try:
        puzzle = published_puzzle(puzzle_id)
    except ValueError as error:  # taken out of the bank since the page was shown
        raise Refusal(str(error)) from error
    return puzzle_id, f"Selected puzzle: **{_name(puzzle)}**"


def _name(puzzle: dict[str, Any]) -> str:
    return bank_views.puzzle_name(puzzle["title"], puzzle["family"], puzzle["difficulty"])


def published_puzzle(puzzle_id: str) -> dict[str, Any]:
    """The served bank's published puzzle (bank_views.fetch_published)."""
    return bank_views.fetch_published(current().bank, puzzle_id)


def open_try(puzzle_id: str | None, request: gr.Request | None = None) -> list[Any]:
    """Show a puzzle to solve: its prompt, its candidates, no answer; the clock starts now."""
    if not puzzle_id:
        raise Refusal("select a puzzle in the gallery first")
    try:
        puzzle = published_puzzle(puzzle_id)
    except ValueError as error:
        raise Refusal(str(error)) from error
    count = len(puzzle["candidates"])
    choices = [f"#{index + 1}" for index in range(count)] + [bank_views.GAVE_UP]
    candidates = [(image, f"#{index + 1}") for index, image in enumerate(puzzle["candidates"])]
    title = f"### {_name(puzzle)}"  # the id is in the address bar and the copied link, for sharing
    return [
        puzzle["id"], title, bank_views.puzzle_picture(puzzle, cell=96), candidates,
        gr.update(choices=choices, value=None), time.time(), "", None, None, "", gr.update(interactive=True),
        gr.Tabs(selected="try"),
    ]


def open_next(puzzle_id: str | None) -> list[Any]:
    """The next published puzzle of the same family (Try it yourself stays on screen)."""
    return open_try(arc.next_id(puzzle_id))[:-1]


def open_random(puzzle_id: str | None) -> list[Any]:
    return open_try(arc.random_id(puzzle_id))[:-1]


def wants_a_puzzle(puzzle_id: str | None) -> bool:
    """Whether the tab, opened now, should show a random puzzle: none on it yet, and the bank has one to show
    (rather than empty boxes and nothing to answer)."""
    return not puzzle_id and bank_views.random_puzzle_id(current().bank) is not None


# The address bar names the puzzle on screen, so it can be shared; the button copies the puzzle's link, built from
# the id it is given rather than read from the address bar, which may not have caught up with the puzzle yet.
PUZZLE_URL = "(id) => location.origin + location.pathname + '?puzzle=' + encodeURIComponent(id)"
SHOW_LINK = f"(id) => {{ if (id) history.replaceState(null, '', ({PUZZLE_URL})(id)); }}"
COPY_LINK = f"(id) => {{ if (id && navigator.clipboard) navigator.clipboard.writeText(({PUZZLE_URL})(id)); }}"


def attempt(visitor_id: str | None, puzzle_id: str, choice: str, started: float | None) -> list[Any]:
    """Record the visitor's answer and time and reveal the truth at once; the model's pick shows too when the bank
    already knows it. The model's own work follows in `attempt_model`, on the model's queue."""
    visitor_id = visitors.ensure_visitor_id(visitor_id)
    services = current()
    if not puzzle_id:
        raise Refusal("open a puzzle first: pick one in the Bank, or press Random puzzle")
    if not choice:  # an empty choice is not giving up: that is a choice of its own
        raise Refusal(f"choose a candidate, or {bank_views.GAVE_UP!r}, before pressing Answer")
    try:
        puzzle = published_puzzle(puzzle_id)  # before recording: no attempt, no answer for an unpublished one
        if puzzle["answer_index"] is None:
            raise ValueError("this puzzle is answered by building its grid in the editor, not by a candidate"
                             if puzzle["family"] == "grid" else "this puzzle has no candidates to choose from")
        index = bank_views.choice_index(choice)
        seconds = max(0.0, time.time() - started) if started else None
        correct = bank_writes.record_attempt(services.bank, visitor_id, puzzle_id, index, seconds)
    except ValueError as error:
        raise Refusal(str(error)) from error
    verdict = "✔ Right!" if correct else ("You gave up." if index is None else "✘ Not this time.")
    lines = [f"## {verdict}"]
    if puzzle["answer_index"] is not None:
        lines.append(f"The answer is **#{puzzle['answer_index'] + 1}**.")
    pick = model_picks.known_model_pick(services.bank, services.loaded_bundle(), puzzle_id)
    model_correct = None if pick is None else pick == puzzle["answer_index"]
    if pick is not None:
        lines.append(model_picks.pick_line(pick, puzzle["answer_index"]))
    # Answered: the button rests until another puzzle is opened, so one round counts one attempt.
    return ["\n\n".join(lines), puzzle["answer"], None, _stats(puzzle_id, model_correct), visitor_id,
            gr.update(interactive=False)]


def attempt_model(puzzle_id: str, verdict: str, progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
    """After an answer: the model's pick (when the verdict lacks it) and its generated answer."""
    services = current()
    try:
        puzzle = published_puzzle(puzzle_id)
    except ValueError as error:
        raise Refusal(str(error)) from error
    generated, model_correct, text = None, None, verdict or ""
    try:
        bundle = services.bundle()
        pick = model_picks.known_model_pick(services.bank, bundle, puzzle_id)
        if pick is None:
            pick = model_picks.model_pick(services.bank, bundle, puzzle)
        if pick is not None:
            model_correct = pick == puzzle["answer_index"]
            if model_picks.PICK_WORDS not in text:
                text += "\n\n" + model_picks.pick_line(pick, puzzle["answer_index"])
        settings = replace(solving.default_sampling(), n_samples=1, seed=0)
        report = lambda f, m: progress(f, desc=m)  # noqa: E731
        generated = model_picks.model_answer(bundle, puzzle, settings, progress=report)
    except (RuntimeError, ValueError) as error:
        log.warning("model unavailable for puzzle %s: %s", puzzle_id, error)
        text += f"\n\n(The model could not answer: {error})"
    return [text, generated, _stats(puzzle_id, model_correct)]


def _stats(puzzle_id: str, model_correct: bool | None) -> str:
    from puzzles.bank import repository

    return bank_views.stats_markdown(repository.puzzle_stats(current().bank, puzzle_id), model_correct)


# --- layout ---------------------------------------------------------------------------------------------------


def build_bank() -> dict[str, Any]:
    """The Bank tab; its "Open in Play" and "Try it yourself" buttons are wired by the caller."""
    ids = gr.State([])
    selected = gr.State(None)
    with gr.Row():
        family = gr.Dropdown(FAMILY_CHOICES, value="any", label="Family", elem_id="bank-family")
        layout = gr.Dropdown(["any", *MATRIX_LAYOUTS], value="any", label="Matrix layout", elem_id="bank-layout")
        tag = gr.Textbox(label="Tag", elem_id="bank-tag")
        low = gr.Slider(1, 5, value=1, step=1, label="Difficulty from", elem_id="bank-low")
        high = gr.Slider(1, 5, value=5, step=1, label="to", elem_id="bank-high")
        model_wrong = gr.Checkbox(label="Model gets it wrong", elem_id="bank-model-wrong")
    gallery = gr.Gallery(elem_id="bank-gallery", columns=4, height=480, format="png", allow_preview=False,
                         interactive=False, label="Published puzzles")
    with gr.Row():
        page = gr.Number(value=1, precision=0, label="Page", elem_id="bank-page")  # out of range: handled in browse
        page_note = gr.Markdown(elem_id="bank-page-note")
        play_button = gr.Button("Open in Play", elem_id="bank-open-play")
        try_button = gr.Button("Try it yourself", variant="primary", elem_id="bank-try")
    selected_note = gr.Markdown(elem_id="bank-selected")
    filters = [family, layout, tag, low, high, model_wrong]
    outputs = [gallery, ids, page_note, page, selected]
    for control in filters:
        control.change(first_page, filters, outputs, api_visibility="private")
    page.submit(browse, [*filters, page], outputs, api_name="browse")
    gallery.select(select_puzzle, ids, [selected, selected_note], api_visibility="private")
    return {"ids": ids, "selected": selected, "filters": filters, "gallery_outputs": outputs, "page": page,
            "play_button": play_button, "try_button": try_button}


def build_try(visitor: gr.BrowserState) -> dict[str, Any]:
    started = gr.State(None)
    # The id drives the page (events, the address bar) but is no name for a person: kept on the page, not shown.
    puzzle_id = gr.Textbox(label="Puzzle id", elem_id="try-puzzle-id", interactive=False, visible="hidden")
    title = gr.Markdown("Pick a puzzle in the Bank (or open a link someone shared) to try it here.",
                        elem_id="try-title")
    with gr.Row():
        prompt = gr.Image(label="The puzzle", elem_id="try-prompt", interactive=False, format="png", height=360)
        candidates = gr.Gallery(label="Candidates", elem_id="try-candidates", columns=4, height=360, format="png",
                                allow_preview=False, interactive=False)
    with gr.Row() as choice_row:
        choice = gr.Radio(bank_views.ANSWER_CHOICES, label="Your answer", elem_id="try-choice")
        answer_button = gr.Button("Answer", variant="primary", elem_id="try-answer", interactive=False)
    grid_parts = arc.build(visitor, puzzle_id, started)
    verdict = gr.Markdown(elem_id="try-verdict")
    with gr.Row() as reveal_row:
        truth = gr.Image(label="The answer", elem_id="try-truth", interactive=False, format="png", height=200)
        generated = gr.Image(label="The model's generated answer", elem_id="try-generated", interactive=False,
                             format="png", height=200)
    stats = gr.Markdown(elem_id="try-stats")
    with gr.Row():
        next_button = gr.Button("Next puzzle", elem_id="try-next")
        random_button = gr.Button("Random puzzle", elem_id="try-random")
        link_button = gr.Button("Copy link to this puzzle", elem_id="try-copy-link")
    answer_outputs = [verdict, truth, generated, stats, visitor, answer_button]
    answered = answer_button.click(
        attempt, [visitor, puzzle_id, choice, started], answer_outputs,
        api_name="attempt", concurrency_id=play.VISITOR_CONCURRENCY, concurrency_limit=play.VISITOR_CONCURRENCY_LIMIT,
    )
    play.settle_on_failure(answered, answer_outputs)
    modelled = answered.success(attempt_model, [puzzle_id, verdict], [verdict, generated, stats],
                                api_name="attempt_model", concurrency_id=play.MODEL_CONCURRENCY,
                                concurrency_limit=play.MODEL_CONCURRENCY_LIMIT, show_progress_on=[generated])
    play.settle_on_failure(modelled, [verdict, generated, stats])
    open_outputs = [puzzle_id, title, prompt, candidates, choice, started, verdict, truth, generated, stats,
                    answer_button]

    def open_when_empty(shown_id: str | None) -> list[Any]:
        return open_random(None) if wants_a_puzzle(shown_id) else [gr.skip()] * len(open_outputs)

    next_button.click(open_next, puzzle_id, open_outputs, api_visibility="private")
    random_button.click(open_random, puzzle_id, open_outputs, api_visibility="private")
    link_button.click(None, puzzle_id, None, js=COPY_LINK)
    puzzle_id.change(None, puzzle_id, None, js=SHOW_LINK)
    puzzle_id.change(arc.open_grid, puzzle_id, arc.open_outputs(grid_parts, choice_row, candidates, reveal_row),
                     api_visibility="private")
    return {"open_outputs": open_outputs, "puzzle_id": puzzle_id, "open_when_empty": open_when_empty}
