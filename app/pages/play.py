"""Play: put images into a prompt layout, solve, look at what the model sees, rate, submit."""
from __future__ import annotations

import functools
import html
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from app import bank_views, bank_writes, prompts, solving, visitors
from app.errors import Refusal
from app.pages import ranking
from app.services import current
from app.uploads import SlotImage

log = logging.getLogger(__name__)

MODEL_CONCURRENCY = "model"  # the model's other work: ranking, what it sees, its part of a person's answer
MODEL_CONCURRENCY_LIMIT = 1  # the CPU has few cores: one such call at a time, the rest wait in the queue
SOLVE_CONCURRENCY = "solve"  # solves run together: the engine batches the generations that arrive at once
SOLVE_CONCURRENCY_LIMIT = 8
VISITOR_CONCURRENCY = "visitor"  # a person's answers: bank reads and writes only, never behind the model
VISITOR_CONCURRENCY_LIMIT = 8
SLOT_HEIGHT = 150
VOTES = ("up", "down")
# Before an example or a random puzzle is filled in, and after: see gelatoHoldModelButtons in static/js/gelato.js.
HOLD_MODEL_BUTTONS = "(...args) => { window.gelatoHoldModelButtons?.(true); return args; }"
RELEASE_MODEL_BUTTONS = "() => { window.gelatoHoldModelButtons?.(false); }"


@dataclass
class PlayComponents:
    """What other pages need to fill the Play page (open a puzzle in Play)."""

    layout: gr.Radio
    pairs: gr.Radio
    slots: dict[str, gr.Image]
    candidates: gr.Gallery
    puzzle_id: gr.State
    groups: list[gr.Group]
    examples: gr.Dropdown
    results: list[Any]  # what a solve shows (RESULT_OUTPUTS order); a new prompt clears them

    def fill_outputs(self) -> list[Any]:
        return [self.layout, self.pairs, *self.slots.values(), self.candidates, self.puzzle_id, *self.groups,
                self.examples, *self.results]


# --- handlers (module level so tests can call them) -----------------------------------------------------------


def _slot_values(values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(prompts.ALL_SLOTS, values, strict=True))


def layout_visibility(layout: str, pairs: int | str = 1) -> list[Any]:
    """Show the group of the chosen layout; in an analogy show as many pair rows as asked."""
    pairs = int(pairs or 1)
    groups = [gr.update(visible=layout == name) for name in prompts.LAYOUTS]
    rows = [gr.update(visible=k <= pairs) for k in range(2, prompts.MAX_PAIRS + 1)]
    return groups + rows


def cleared_results() -> list[Any]:
    """Values for the result outputs once the prompt changed: samples, settings used, chart, pick, what the
    model sees, the kept run, the sample number, the rating status (all empty)."""
    return [None, "", gr.update(value="", visible=False), "", None, None, 1, ""]


def fill_from_puzzle(puzzle_id: str, example: str | None = None) -> list[Any]:
    """Values for PlayComponents.fill_outputs(): layout, pairs, every slot, candidates, puzzle id, groups, the
    examples choice (`example`, else none) and cleared results."""
    puzzle = bank_views.fetch_puzzle(current().bank, puzzle_id)
    layout, pairs, slots = prompts.slots_from_puzzle(puzzle["family"], puzzle["panels"], puzzle.get("layout"))
    candidates = [(image, f"#{index + 1}") for index, image in enumerate(puzzle["candidates"])] or None
    groups = [gr.update(visible=layout == name) for name in prompts.LAYOUTS]
    pairs_in_task = (len(puzzle["panels"]) - 1) // 2
    if puzzle["family"] == "grid" and pairs_in_task > prompts.MAX_PAIRS:
        gr.Info(f"This ARC task has {pairs_in_task} example pairs and Play holds {prompts.MAX_PAIRS}: the first "
                f"{prompts.MAX_PAIRS} are shown. Try it yourself shows them all, with a grid editor.")
    return [layout, str(pairs), *slots.values(), candidates, puzzle["id"], *groups, gr.update(value=example),
            *cleared_results()]


def clear_all() -> list[Any]:
    """Every slot, the candidates, the puzzle, the examples choice and every result emptied."""
    return [None] * len(prompts.ALL_SLOTS) + [None, None, gr.update(value=None), *cleared_results()]


def solve(layout: str, pairs: str, *rest: Any, progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
    """Solve the prompt in the slots: samples, settings used, ranking (when there are candidates)."""
    *slot_values, candidates, n_samples, temperature, top_k, top_p, seed, guidance, puzzle_id = rest
    services = current()
    try:
        settings = solving.SampleSettings.from_inputs(n_samples, temperature, top_k, top_p, seed, guidance)
        images = prompts.prompt_images(layout, _slot_values(tuple(slot_values)), int(pairs or 1))
        candidate_images = prompts.candidate_images(candidates)
        bundle = services.bundle()
        result = solving.solve(bundle, images, settings, candidate_images, progress=lambda f, m: progress(f, desc=m),
                               family=layout)
    except (ValueError, RuntimeError) as error:
        raise Refusal(str(error)) from error
    try:
        run = bank_writes.save_run(services.settings.temp_dir, images, result, puzzle_id or None)
    except OSError as error:  # a full or read-only disk: say so instead of failing without a word
        log.error("cannot keep the samples of a solve: %s", error)
        raise Refusal(f"the server cannot store the samples right now ({error.strerror}); try again later") from error
    gallery = [(image, f"sample {index + 1}") for index, image in enumerate(result.samples)]
    answer_index = bank_views.answer_index_of(services.bank, puzzle_id)
    chart, pick_text = _ranking_outputs(result.scores, result.pick, answer_index)
    return [gallery, result.settings_markdown(), chart, pick_text, None, run, 1, ""]


def _ranking_outputs(scores: list[float], pick: int | None, answer_index: int | None) -> tuple[Any, str]:
    if not scores:
        return gr.update(value=None, visible=False), ""
    chart = ranking.chart_html(solving.ranking_rows(scores, pick, answer_index))
    text = f"**Model's pick: candidate #{pick + 1}**" if pick is not None else ""
    if answer_index is not None:
        text += f" — the answer is #{answer_index + 1}" + (" ✔" if pick == answer_index else " ✘")
    return gr.update(value=chart, visible=True), text


def score(layout: str, pairs: str, *rest: Any, progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
    """Rank the candidates only (no generation)."""
    *slot_values, candidates, puzzle_id = rest
    try:
        images = prompts.prompt_images(layout, _slot_values(tuple(slot_values)), int(pairs or 1))
        candidate_images = prompts.candidate_images(candidates)
        scores = solving.rank(current().bundle(), images, candidate_images, progress=lambda f, m: progress(f, desc=m),
                              family=layout)
    except (ValueError, RuntimeError) as error:
        raise Refusal(str(error)) from error
    pick = int(np.argmax(scores))
    chart, text = _ranking_outputs(scores, pick, bank_views.answer_index_of(current().bank, puzzle_id))
    return [chart, text]


def model_view(layout: str, pairs: str, *slot_values: Any) -> list[tuple[np.ndarray, str]]:
    """Each filled input after resizing and a tokenizer round trip (what a matrix or sequence path reads: as read)."""
    images = [prompts.as_image(value) for value in slot_values]
    images = [image for image in images if image is not None]
    try:
        return solving.what_the_model_sees(current().bundle(), images, family=layout)
    except (ValueError, RuntimeError) as error:
        raise Refusal(str(error)) from error


def select_sample(event: gr.SelectData) -> int:
    """The clicked sample's number as the gallery captions it (1 for the first)."""
    return int(event.index) + 1


def rate(visitor_id: str | None, run: dict | None, sample: Any, vote: str, correct: bool) -> tuple[str, str]:
    """Store (or update) this visitor's rating of one sample; returns a status line and the visitor id."""
    visitor_id = visitors.ensure_visitor_id(visitor_id)
    number = int(sample if sample not in (None, "") else 1)
    try:
        rating_id = bank_writes.rate_sample(current().bank, visitor_id, run, number - 1, vote, correct is True)
    except ValueError as error:
        raise Refusal(str(error)) from error
    word = "up" if vote == "up" else "down"
    marked = " and marked correct" if correct is True else ""
    # The rating's id stays out of sight (an HTML comment) for programs that check what was stored.
    return f"Thanks: sample {number} rated {word}{marked}. <!-- (rating {rating_id}) -->", visitor_id


def submit(visitor_id: str | None, layout: str, pairs: str, *rest: Any) -> tuple[str, str]:
    """Save the prompt as a pending puzzle for curators, optionally with the answer."""
    *slot_values, candidates, answer, title = rest
    visitor_id = visitors.ensure_visitor_id(visitor_id)
    try:
        images = prompts.prompt_images(layout, _slot_values(tuple(slot_values)), int(pairs or 1))
        candidate_images = prompts.candidate_images(candidates)
        puzzle_id = bank_writes.submit_prompt(
            current().bank, visitor_id, layout, images, prompts.as_image(answer), candidate_images, title or ""
        )
    except ValueError as error:
        raise Refusal(str(error)) from error
    return submitted_message(title, puzzle_id), visitor_id


def submitted_message(title: str | None, puzzle_id: str) -> str:
    """Thanks, naming the puzzle by the visitor's own title; its id stays out of sight (an HTML comment) for programs
    that look the stored puzzle up."""
    name = html.escape((title or "").strip()[:200])
    named = f"your puzzle “{name}”" if name else "your puzzle"
    return f"Thanks: {named} is waiting for a curator's review. <!-- (puzzle {puzzle_id}) -->"


def keeper(count: int) -> Callable[[], Any]:
    """A handler that leaves its `count` outputs as they are (it settles outputs after a failed event)."""
    return lambda: gr.skip() if count == 1 else [gr.skip()] * count


def settle_on_failure(event: Any, outputs: list[Any]) -> None:
    """A failed event leaves an "Error" badge on each of its outputs; the toast has said what went wrong, so the
    outputs are settled again, unchanged."""
    event.failure(keeper(len(outputs)), None, outputs, api_visibility="private", show_progress="hidden", queue=False)


def clear_status() -> str:
    return ""


def model_input_size() -> int | None:
    """The side of the square the model resizes every image to (the bundle manifest; the model is not loaded)."""
    from engine.bundle import read_manifest

    try:
        return int(read_manifest(current().bundle_dir)["image_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def small_image_note(image: np.ndarray, size: int | None) -> str | None:
    """What the model makes of a picture smaller than its input square, or None when it is large enough."""
    height, width = image.shape[:2]
    if size is None or max(height, width) >= size:
        return None
    seen = "one flat colour" if height * width == 1 else "large blocks of colour"
    return (f"This image is only {width} x {height} pixels: the model enlarges it to {size} x {size}, "
            f"so it sees {seen}.")


def check_upload(image: np.ndarray | None) -> None:
    """Runs as a file lands in a slot. SlotImage has already read it, so a file that is no usable image fails
    here, at upload, with its reason; a tiny picture gets a note on what the model will see."""
    note = None if image is None else small_image_note(image, model_input_size())
    if note:
        gr.Warning(note)


def check_candidates(items: list[Any] | None) -> list[Any] | None:
    """Keep the uploaded candidates that are usable images; name each refused file and why."""
    kept, refused = [], []
    try:  # each is read below: say so before reading more than a ranking takes
        prompts.check_candidate_count(len(items or []))
    except ValueError as error:
        raise Refusal(f"{error}; remove some (the × on the gallery clears them)") from error
    for item in items or []:
        try:
            prompts.as_image(item)
            kept.append(item)
        except ValueError as error:
            refused.append(str(error))
    for reason in refused:
        gr.Warning(reason)
    return kept or None


def empty_slot() -> None:
    """Clears a slot whose file was refused (its reason is already on screen)."""
    return None


def random_fill() -> list[Any]:
    puzzle_id = bank_views.random_puzzle_id(current().bank)
    if puzzle_id is None:
        raise Refusal("the bank has no published puzzles yet")
    return fill_from_puzzle(puzzle_id)


def layout_example_fill(layout: str) -> list[Any]:
    """Fill `layout` with one of the examples of it (chosen at random among them), ready to solve."""
    choices = bank_views.example_choices(current().bank, families=[layout])
    if not choices:
        raise Refusal(f"the bank has no published {layout} puzzles yet")
    choice = random.choice(choices)
    return fill_from_puzzle(bank_views.id_from_choice(choice), choice)


def example_fill(title_and_id: str | None) -> list[Any]:
    """Fill the layout from the chosen example; a dropdown closed without a choice changes nothing."""
    if not title_and_id:
        return [gr.skip()] * (len(prompts.ALL_SLOTS) + 5 + len(prompts.LAYOUTS) + len(cleared_results()))
    return fill_from_puzzle(bank_views.id_from_choice(title_and_id), title_and_id)


def load_examples() -> list[Any]:
    """At page load, read from the bank: the example choices, the bank thumbnails (drag them into a slot) and
    which one-click example buttons have an example to fill."""
    bank = current().bank
    by_layout = {name: bank_views.example_choices(bank, families=[name]) for name in prompts.LAYOUTS}
    examples = example_labels([choice for choices in by_layout.values() for choice in choices])
    thumbnails = bank_views.bank_thumbnails(bank)
    return [gr.update(choices=examples, value=None), thumbnails,
            *(gr.update(visible=bool(choices)) for choices in by_layout.values())]


def first_expectation() -> str:
    """The note for the layout a page opens with (read while the page is built: the bundle is fixed per server)."""
    try:
        return expectation(prompts.LAYOUTS[0])
    except RuntimeError:  # the pages built without a server (no services): the note comes with a layout change
        return ""


def example_labels(choices: list[str]) -> list[tuple[str, str]]:
    """(words shown, value) for the examples list: titles without their ids, numbered where they repeat."""
    titles = [choice.rsplit(" [", 1)[0] for choice in choices]
    seen: dict[str, int] = {}
    labels = []
    for title, choice in zip(titles, choices, strict=True):
        seen[title] = seen.get(title, 0) + 1
        labels.append((title if titles.count(title) == 1 else f"{title} ({seen[title]})", choice))
    return labels


def expectation(layout: str) -> str:
    """What the shipped model gets right on this layout's family (from its evaluation), so noise is expected."""
    from app.pages import about

    scores = about.family_scores(current().bundle_dir, layout)
    picks, draws = scores.get("multiple_choice_accuracy"), scores.get("generative_accuracy")
    if picks is None or draws is None:
        return f"_What to expect: this model carries no evaluation on {layout} puzzles yet._"
    return (f"_What to expect: on {layout} puzzles it has not seen, this small model picks the right candidate "
            f"{100 * picks:.0f}% of the time (chance: 12.5%) and draws an answer nearest the right one "
            f"{100 * draws:.0f}% of the time, so samples are often rough._")


# --- layout ---------------------------------------------------------------------------------------------------


def _slot(name: str) -> gr.Image:
    # SlotImage reads uploads safely (format, pixel limit, normalisation) and names the problem when it can't.
    return SlotImage(
        label=prompts.slot_label(name), elem_id=name, elem_classes=["gelato-slot"], type="numpy", format="png",
        image_mode="RGB", sources=["upload", "clipboard"], height=SLOT_HEIGHT, min_width=110,
    )


def _check_on_upload(slot: gr.Image) -> None:
    """Read a file as soon as it lands in `slot`; a refused one is named in a message and the slot emptied."""
    checked = slot.upload(check_upload, slot, None, api_visibility="private", show_progress="hidden")
    checked.failure(empty_slot, None, slot, api_visibility="private", show_progress="hidden", queue=False)


def _missing(label: str = "?") -> None:
    gr.HTML(f"<div class='gelato-missing'>{label}</div>")


def build(visitor: gr.BrowserState) -> PlayComponents:
    puzzle_id = gr.State(None)
    run = gr.State(None, time_to_live=3600)
    slots: dict[str, gr.Image] = {}
    gr.Markdown("Put pictures into the slots (from your computer, or drag one from the bank images) or pick an "
                "example, then press **Solve**: the model draws the missing picture. Add candidates and it also "
                "ranks them.", elem_id="play-intro")
    with gr.Row(elem_id="one-click"):  # one click fills an example of the layout and solves it
        # Shown by the page load, which also resets the examples list: a click before it would be undone.
        one_click = {name: gr.Button(f"Solve {'an' if name[0] in 'aeiou' else 'a'} {name} example", size="sm",
                                     elem_id=f"one-click-{name}", visible=False) for name in prompts.LAYOUTS}
    with gr.Row():
        layout = gr.Radio(list(prompts.LAYOUTS), value="analogy", label="Prompt layout", elem_id="layout", scale=3)
        examples = gr.Dropdown([], label="Examples from the bank", elem_id="examples", scale=3)
        random_button = gr.Button("Random puzzle", elem_id="random-puzzle", scale=1)
        clear_button = gr.Button("Clear all", elem_id="clear-all", scale=1)
    with gr.Group(visible=True, elem_id="analogy-group") as analogy_group:
        pairs = gr.Radio(["1", "2", "3"], value="1", label="Example pairs", elem_id="pairs")
        pair_rows = []
        for k in range(1, prompts.MAX_PAIRS + 1):
            with gr.Row(visible=k == 1, elem_classes=["gelato-cells"]) as row:
                slots[f"slot-a{k}"] = _slot(f"slot-a{k}")
                slots[f"slot-a{k}p"] = _slot(f"slot-a{k}p")
            pair_rows.append(row)
        with gr.Row(elem_classes=["gelato-cells"]):
            slots["slot-b"] = _slot("slot-b")
            _missing("B' = ?")
    with gr.Group(visible=False, elem_id="sequence-group") as sequence_group:
        for start in (0, 4):
            with gr.Row(elem_classes=["gelato-cells"]):
                for name in prompts.SEQUENCE_SLOTS[start : start + 4]:
                    slots[name] = _slot(name)
        gr.Markdown("Fill frames from 1 on; the model continues with the next frame.")
    with gr.Group(visible=False, elem_id="matrix-group") as matrix_group:
        for start in (0, 3, 6):
            with gr.Row(elem_classes=["gelato-cells"]):
                for name in prompts.MATRIX_SLOTS[start : start + 3]:
                    slots[name] = _slot(name)
                if start == 6:
                    _missing("?")
    slots = {name: slots[name] for name in prompts.ALL_SLOTS}  # one fixed order for every handler
    for slot in slots.values():
        _check_on_upload(slot)
    groups = [analogy_group, sequence_group, matrix_group]
    with gr.Accordion("Bank images (drag one into a slot)", open=False, elem_id="bank-images-accordion"):
        thumbnails = gr.Gallery(elem_id="bank-images", columns=8, height=180, format="png", interactive=False,
                                allow_preview=False, show_label=False, elem_classes=["gelato-reflow"])
    candidates = gr.Gallery(label="Candidates (optional: the model ranks them)", elem_id="candidates", columns=8,
                            object_fit="contain", elem_classes=["gelato-fit", "gelato-reflow"], format="png",
                            interactive=True, file_types=["image"],
                            type="filepath")  # read by prompts.as_image -> app.uploads
    candidates.upload(check_candidates, candidates, candidates, api_visibility="private")
    with gr.Accordion("Advanced", open=False, elem_id="advanced"):
        with gr.Row():
            n_samples = gr.Slider(1, 8, value=4, step=1, label="Samples (N)", elem_id="n-samples")
            chosen = solving.default_sampling()  # the bundle's settings measured best (engine.sampling_sweep)
            temperature = gr.Slider(0.1, 2.0, value=chosen.temperature, step=0.05, label="Temperature",
                                    elem_id="temperature")
            top_k = gr.Slider(0, 256, value=chosen.top_k, step=1, label="Top-k (0 = off)", elem_id="top-k")
            top_p = gr.Slider(0.05, 1.0, value=chosen.top_p, step=0.05, label="Top-p", elem_id="top-p")
            seed = gr.Number(value=0, precision=0, label="Seed (-1 = random)", elem_id="seed")
            guidance = gr.Dropdown(list(solving.GUIDANCE_CHOICES), value="auto", elem_id="guidance",
                                   allow_custom_value=True,  # any weight from 0 to 5, checked by SampleSettings
                                   label="Guidance (draws away from a copy of the last image)")
    with gr.Row():
        solve_button = gr.Button("Solve", variant="primary", elem_id="solve")
        score_button = gr.Button("Rank candidates", elem_id="rank")
        sees_button = gr.Button("What the model sees", elem_id="model-sees")
    expect_note = gr.Markdown(first_expectation(), elem_id="expectations")
    # Whole pictures (contain, not cover) and room for every sample and input: nothing is cropped or scrolled away.
    samples = gr.Gallery(label="Samples", elem_id="samples", columns=8, object_fit="contain",
                         elem_classes=["gelato-fit", "gelato-reflow"], format="png", interactive=False)
    settings_used = gr.Markdown(elem_id="settings-used")
    ranking_chart = gr.HTML(elem_id="ranking", visible=False)
    pick_text = gr.Markdown(elem_id="pick")
    sees = gr.Gallery(label="What the model sees", elem_id="sees", columns=8, object_fit="contain",
                      elem_classes=["gelato-fit", "gelato-reflow"], format="png")
    with gr.Row():
        sample_index = gr.Number(value=1, precision=0, label="Sample (click one above)", elem_id="rate-sample",
                                 minimum=1)
        vote = gr.Radio(list(VOTES), value="up", label="Rating", elem_id="rate-vote")
        correct = gr.Checkbox(label="This is correct", elem_id="rate-correct")
        rate_button = gr.Button("Send rating", elem_id="rate")
    rate_status = gr.Markdown(elem_id="rate-status")
    with gr.Accordion("Submit this prompt as a puzzle", open=False, elem_id="submit-accordion"):
        with gr.Row():
            title = gr.Textbox(label="Title", elem_id="submit-title")
            answer = SlotImage(label="Answer (optional)", elem_id="submit-answer", type="numpy", format="png",
                               image_mode="RGB", height=SLOT_HEIGHT)
        _check_on_upload(answer)
        submit_button = gr.Button("Submit for review", elem_id="submit")
        submit_status = gr.Markdown(elem_id="submit-status")

    results = [samples, settings_used, ranking_chart, pick_text, sees, run, sample_index, rate_status]
    components = PlayComponents(layout, pairs, slots, candidates, puzzle_id, groups, examples, results)
    slot_list = list(slots.values())
    layout.change(layout_visibility, [layout, pairs], [*groups, *pair_rows[1:]], api_visibility="private")
    layout.change(expectation, layout, expect_note, api_visibility="private", show_progress="hidden")
    pairs.change(layout_visibility, [layout, pairs], [*groups, *pair_rows[1:]], api_visibility="private")
    clear_button.click(clear_all, None, [*slot_list, candidates, puzzle_id, examples, *results], api_name="clear_all")
    filled = (random_button.click(random_fill, None, components.fill_outputs(), api_name="random_puzzle",
                                  js=HOLD_MODEL_BUTTONS),
              examples.input(example_fill, examples, components.fill_outputs(), api_name="example",
                             js=HOLD_MODEL_BUTTONS))
    one_click_filled = [button.click(functools.partial(layout_example_fill, name), None, components.fill_outputs(),
                                     api_visibility="private", js=HOLD_MODEL_BUTTONS)
                        for name, button in one_click.items()]
    for event in (*filled, *one_click_filled):  # after success and failure alike
        event.then(None, None, None, js=RELEASE_MODEL_BUTTONS, api_visibility="private", queue=False)
    model_inputs = [layout, pairs, *slot_list, candidates]
    solving_inputs = [*model_inputs, n_samples, temperature, top_k, top_p, seed, guidance, puzzle_id]
    solving_queue = {"concurrency_id": SOLVE_CONCURRENCY, "concurrency_limit": SOLVE_CONCURRENCY_LIMIT,
                     "show_progress_on": [samples]}
    solved = solve_button.click(solve, solving_inputs, results, api_name="solve", **solving_queue)
    for event in one_click_filled:  # the chained Solve reads the slots once the example is in them
        settle_on_failure(event.success(solve, solving_inputs, results, api_visibility="private", **solving_queue),
                          results)
    scored = score_button.click(score, [*model_inputs, puzzle_id], [ranking_chart, pick_text], api_name="score",
                                concurrency_id=MODEL_CONCURRENCY, concurrency_limit=MODEL_CONCURRENCY_LIMIT)
    seen = sees_button.click(model_view, [layout, pairs, *slot_list], sees, api_name="model_sees",
                             concurrency_id=MODEL_CONCURRENCY, concurrency_limit=MODEL_CONCURRENCY_LIMIT)
    samples.select(select_sample, None, sample_index, api_visibility="private")
    rated = rate_button.click(rate, [visitor, run, sample_index, vote, correct], [rate_status, visitor],
                              api_name="rate")
    submitted = submit_button.click(submit, [visitor, *model_inputs, answer, title], [submit_status, visitor],
                                    api_name="submit")
    # The rating and submission lines also drop an outdated message when their event fails.
    for event, outputs in ((solved, results), (scored, [ranking_chart, pick_text]), (seen, [sees])):
        settle_on_failure(event, outputs)
    rated.failure(clear_status, None, rate_status, api_visibility="private", show_progress="hidden", queue=False)
    submitted.failure(clear_status, None, submit_status, api_visibility="private", show_progress="hidden",
                      queue=False)
    components.load_examples_outputs = [examples, thumbnails, *one_click.values()]  # type: ignore[attr-defined]
    return components
