"""Named endpoints for programs: `answer`, `rank` and `puzzle`, with named parameters (gradio_client's
`Client.view_api()` lists them). The page handlers keep their own endpoints; these take plain lists of images.

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    samples = client.predict(images=[handle_file("a.png"), handle_file("a2.png"), handle_file("b.png")],
                             layout="analogy", api_name="/answer")
"""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from app import bank_views, prompts, solving
from app.errors import Refusal
from app.services import current

MODEL_CONCURRENCY = "model"  # the queue shared with the pages' model events


def _some(images: list[np.ndarray], what: str) -> list[np.ndarray]:
    if not images:
        raise ValueError(f"give at least one image as {what}")
    return images


def _prompt(files: list[Any] | None) -> list[np.ndarray]:
    """Uploaded files -> RGB arrays, counted before they are read with the upload checks (each bad file named)."""
    return _some(prompts.counted_images(files, prompts.MOST_PROMPT_IMAGES, "images make a prompt"), "the prompt")


def sentence(layout: str, images: list[np.ndarray]) -> list[np.ndarray]:
    """The prompt in sentence order, checked as the Play layouts check it (analogy: A1, A1', ..., B)."""
    if layout == "analogy":
        pairs = (len(images) - 1) // 2
        if len(images) % 2 == 0 or not 1 <= pairs <= prompts.MAX_PAIRS:
            raise ValueError(f"an analogy is 1 to {prompts.MAX_PAIRS} example pairs and B: 3, 5 or 7 images, "
                             f"not {len(images)}")
        names = [name for k in range(1, pairs + 1) for name in (f"slot-a{k}", f"slot-a{k}p")] + ["slot-b"]
        return prompts.prompt_images(layout, dict(zip(names, images, strict=True)), pairs)
    names = {"sequence": prompts.SEQUENCE_SLOTS, "matrix": prompts.MATRIX_SLOTS}.get(layout, ())
    if len(images) > len(names) and names:
        raise ValueError(f"a {layout} takes at most {len(names)} images, not {len(images)}")
    return prompts.prompt_images(layout, dict(zip(names, images, strict=False)))


def answer(images: list[Any], layout: str, n_samples: int, temperature: float, top_k: int, top_p: float,
           seed: int, guidance: float | None = None) -> list[np.ndarray]:
    """The model's answers (n_samples images) to a prompt given as images in sentence order (guidance None: the
    model's weight for the layout's family)."""
    try:
        settings = solving.SampleSettings.from_inputs(n_samples, temperature, top_k, top_p, seed, guidance)
        prompt = sentence(layout, _prompt(images))
        return solving.solve(current().bundle(), prompt, settings, family=layout).samples
    except (ValueError, RuntimeError) as error:
        raise Refusal(str(error)) from error


def rank(images: list[Any], candidates: list[Any], layout: str) -> list[float]:
    """Each candidate's probability of being the answer, among the candidates (they sum to 1)."""
    try:
        prompt = sentence(layout, _prompt(images))
        choices = _some(prompts.candidate_images(candidates), "candidates")
        scores = solving.rank(current().bundle(), prompt, choices, family=layout)
    except (ValueError, RuntimeError) as error:
        raise Refusal(str(error)) from error
    return solving.candidate_probabilities(scores)


def puzzle(puzzle_id: str) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """A published puzzle: its description (no answer), its panels in sentence order and its candidates."""
    try:
        found = bank_views.fetch_published(current().bank, str(puzzle_id or "").strip())
    except ValueError as error:
        raise Refusal(str(error)) from error
    info = {key: found[key] for key in ("id", "family", "title", "layout", "tags", "difficulty")}
    return info, found["panels"], found["candidates"]


def _files(label: str) -> gr.File:
    return gr.File(label=label, file_count="multiple", file_types=["image"], type="filepath")


def build() -> None:
    """The endpoints' components, kept out of sight: they exist for the API only."""
    with gr.Column(visible=False):
        images, candidates = _files("images"), _files("candidates")
        layout = gr.Dropdown(list(prompts.LAYOUTS), value="analogy", label="layout")
        n_samples = gr.Number(4, precision=0, label="n_samples")
        chosen = solving.default_sampling()  # the bundle's measured defaults, as on Play
        temperature = gr.Number(chosen.temperature, label="temperature")
        top_k = gr.Number(chosen.top_k, precision=0, label="top_k")
        top_p = gr.Number(chosen.top_p, label="top_p")
        seed = gr.Number(0, precision=0, label="seed")
        guidance = gr.Number(None, label="guidance")  # empty: the model's weight for the layout's family
        puzzle_id = gr.Textbox(label="puzzle_id")
        samples, panels, choices = (gr.Gallery(format="png", label=name) for name in ("samples", "panels", "choices"))
        scores, info = gr.JSON(label="scores"), gr.JSON(label="puzzle")
        answer_button, rank_button, puzzle_button = gr.Button(), gr.Button(), gr.Button()
    model = {"concurrency_id": MODEL_CONCURRENCY, "concurrency_limit": 1}
    answer_button.click(answer, [images, layout, n_samples, temperature, top_k, top_p, seed, guidance], samples,
                        api_name="answer", **model)
    rank_button.click(rank, [images, candidates, layout], scores, api_name="rank", **model)
    puzzle_button.click(puzzle, puzzle_id, [info, panels, choices], api_name="puzzle")
