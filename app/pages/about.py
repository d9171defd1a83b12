"""About: the model card, the evaluation table, and how a visual sentence is built."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from app.services import current

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
SENTENCE_PICTURE = STATIC / "visual-sentence.svg"


def model_card(bundle_dir: Path) -> str:
    """MODEL_CARD.md of the bundle (read as text: the model itself is not loaded)."""
    path = Path(bundle_dir) / "MODEL_CARD.md"
    if not path.is_file():
        return f"_No model card: {path} does not exist yet._"
    return path.read_text(encoding="utf-8")


def _rows(metrics: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(metrics, dict):
        rows: list[tuple[str, str]] = []
        for key, value in metrics.items():
            rows += _rows(value, f"{prefix}{key} / " if isinstance(value, dict) else f"{prefix}{key}")
        return rows
    value = f"{metrics:.3f}" if isinstance(metrics, float) else str(metrics)
    return [(prefix.rstrip(" /"), value)]


def evaluation_table(bundle_dir: Path) -> str:
    """The evaluation metrics stored in the bundle manifest, as a Markdown table."""
    path = Path(bundle_dir) / "manifest.json"
    if not path.is_file():
        return "_No evaluation: the bundle has no manifest yet._"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    metrics = manifest.get("evaluation") or manifest.get("metrics") or {}
    if not metrics:
        return "_The bundle manifest carries no evaluation yet._"
    lines = ["| Measure | Value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in _rows(metrics)]
    return "\n".join(lines)


def load_about() -> tuple[str, str]:
    bundle_dir = current().bundle_dir
    return model_card(bundle_dir), evaluation_table(bundle_dir)


def build() -> tuple[gr.Markdown, gr.Markdown]:
    gr.Markdown("## How a visual sentence is built")
    picture = SENTENCE_PICTURE.read_text(encoding="utf-8") if SENTENCE_PICTURE.is_file() else ""
    gr.HTML(picture, elem_id="sentence-picture")
    gr.Markdown(
        "Every image of the prompt is resized and turned into a grid of discrete codes by the tokenizer. "
        "The codes of all images, in order, after a start token, form one *visual sentence*; the transformer "
        "continues it one code at a time, and the tokenizer's decoder turns the new codes back into pixels. "
        "To rank candidates, the model scores how likely each candidate's codes are after the prompt."
    )
    gr.Markdown("## Evaluation")
    evaluation = gr.Markdown(elem_id="about-evaluation")
    gr.Markdown("## Model card")
    card = gr.Markdown(elem_id="about-card")
    return card, evaluation
