"""About: what the model can and cannot do first, then the details (model card, every measure) folded below."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from app.services import current

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
SENTENCE_PICTURE = STATIC / "visual-sentence.svg"
FILE_ROUTE = "/gradio_api/file="  # Gradio serves files listed in `allowed_paths` here
CARD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)")  # pictures the card names beside itself
SAMPLE_PICTURE = "samples.png"  # the summary's picture: what Solve returns at the default settings
MEASURES = (  # (manifest key, column heading, as a percentage)
    ("n", "puzzles", False),
    ("multiple_choice_accuracy", "picks the right candidate", True),
    ("generative_accuracy", "draws an answer nearest the right candidate", True),
    ("psnr_generated", "drawn answer vs truth (PSNR, dB)", False),
    ("psnr_ceiling", "tokenizer round trip (PSNR, dB)", False),
)
CHANCE = "Chance is 12.5% (one of 8 candidates)."


def card_images(bundle_dir: Path) -> list[Path]:
    """The pictures MODEL_CARD.md shows that exist in the bundle (they must be listed as servable files)."""
    path = Path(bundle_dir) / "MODEL_CARD.md"
    if not path.is_file():
        return []
    names = {name for _, name in CARD_IMAGE.findall(path.read_text(encoding="utf-8"))}
    return [image.resolve() for image in sorted(Path(bundle_dir) / name for name in names) if image.is_file()]


def _served(text: str, bundle_dir: Path) -> str:
    """Card text with its relative picture links turned into the URLs the server answers."""
    def link(match: re.Match[str]) -> str:
        image = (Path(bundle_dir) / match.group(2)).resolve()
        return f"![{match.group(1)}]({FILE_ROUTE}{image})" if image.is_file() else f"_({match.group(1)}: missing)_"

    return CARD_IMAGE.sub(link, text)


def _card_text(bundle_dir: Path) -> str | None:
    path = Path(bundle_dir) / "MODEL_CARD.md"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def model_card(bundle_dir: Path) -> str:
    """MODEL_CARD.md of the bundle without its title (the page names it), pictures served by the app."""
    text = _card_text(bundle_dir)
    if text is None:
        return f"_No model card: {Path(bundle_dir) / 'MODEL_CARD.md'} does not exist yet._"
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return _served("\n".join(lines).strip(), bundle_dir)


def card_summary(bundle_dir: Path) -> str:
    """The card's opening paragraph (its status in a few lines), or nothing when the card has none."""
    text = _card_text(bundle_dir) or ""
    paragraphs = [part.strip() for part in text.split("\n\n") if part.strip() and not part.lstrip().startswith("#")]
    return paragraphs[0] if paragraphs else ""


def _metrics(bundle_dir: Path) -> Mapping[str, Any]:
    from engine.bundle import BundleError, read_manifest

    try:
        manifest = read_manifest(bundle_dir)
    except BundleError:  # no model facts to show; serving says why elsewhere
        return {}
    return manifest.get("evaluation") or manifest.get("metrics") or {}


def _cell(value: Any, percent: bool) -> str:
    if value is None:
        return "—"
    if percent:
        return f"{100 * float(value):.1f}%"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _table(rows: Mapping[str, Mapping[str, Any]], measures: tuple[tuple[str, str, bool], ...]) -> str:
    shown = [m for m in measures if any(row.get(m[0]) is not None for row in rows.values())]
    lines = ["| | " + " | ".join(heading for _, heading, _ in shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(key), percent) for key, _, percent in shown) + " |")
    return "\n".join(lines)


def family_scores(bundle_dir: Path, family: str) -> Mapping[str, Any]:
    """The shipped evaluation of one family (empty when the bundle carries none)."""
    return (_metrics(bundle_dir).get("families") or {}).get(family) or {}


def family_table(bundle_dir: Path) -> str:
    """Per family: how often the model picks the right candidate and draws the right answer."""
    families = _metrics(bundle_dir).get("families") or {}
    if not families:
        return "_The bundle carries no evaluation yet._"
    return _table(families, MEASURES[:3]) + f"\n\n{CHANCE}"


def evaluation_table(bundle_dir: Path) -> str:
    """Every measure the bundle manifest carries: one row per family and per matrix layout."""
    metrics = _metrics(bundle_dir)
    rows: dict[str, Mapping[str, Any]] = dict(metrics.get("families") or {})
    rows.update({f"matrix: {name}": row for name, row in (metrics.get("matrix_layouts") or {}).items()})
    if not rows:
        return "_The bundle manifest carries no evaluation yet._"
    return _table(rows, MEASURES)


def summary(bundle_dir: Path) -> str:
    """What the model can and cannot do, in a few lines with the per-family numbers and a sample picture."""
    parts = [card_summary(bundle_dir), "### How often it is right, per family", family_table(bundle_dir)]
    sample = Path(bundle_dir) / SAMPLE_PICTURE
    if sample.is_file():
        parts += ["### What Solve returns",
                  "Held-out puzzles at Play's default settings. Each row: the prompt, the answer (green frame) and "
                  "four samples, framed green when the nearest candidate is the answer, red otherwise.",
                  f"![samples at the default settings]({FILE_ROUTE}{sample.resolve()})"]
    return "\n\n".join(part for part in parts if part)


def load_about() -> tuple[str, str, str]:
    bundle_dir = current().bundle_dir
    return summary(bundle_dir), model_card(bundle_dir), evaluation_table(bundle_dir)


def build() -> tuple[gr.Markdown, gr.Markdown, gr.Markdown]:
    gr.Markdown("## What the model can and cannot do")
    overview = gr.Markdown(elem_id="about-summary")
    with gr.Accordion("How a visual sentence is built", open=False, elem_id="about-sentence"):
        picture = SENTENCE_PICTURE.read_text(encoding="utf-8") if SENTENCE_PICTURE.is_file() else ""
        gr.HTML(picture, elem_id="sentence-picture")
        gr.Markdown(
            "Every image of the prompt is resized and turned into a grid of discrete codes by the tokenizer. "
            "The codes of all images, in order, after a start token, form one *visual sentence*; the transformer "
            "continues it one code at a time, and the tokenizer's decoder turns the new codes back into pixels. "
            "To rank candidates, the model scores how likely each candidate's codes are after the prompt "
            "(its log-likelihood; for some families, named in the card below, less how likely they are after the "
            "last prompt panel alone, so that a copy of that panel is not favoured, and for some plus how "
            "likely the example pairs are when the candidate is read as the first example); the Play page shows "
            "each candidate's share of that score."
        )
        gr.Markdown(
            "Matrices can take another road when the bundle carries a *matrix path* (the shipped one does): a small "
            "reader names what each of the 8 panels shows (the layout and, per shape group, its type, size, shade "
            "and the cells it fills), and a small transformer trained on those words ranks the candidates and "
            "writes the missing panel's words, which are drawn as a plain panel. It answers only when the reader "
            "is sure of at least half the pictures (Play's *What the model sees* then shows each panel as it was "
            "read); anything else, and every other puzzle, goes through the visual sentence above.",
            elem_id="about-matrix-path",
        )
        gr.Markdown(
            "Sequences are ranked the same way when the bundle carries a *sequence path* (the shipped one does): a "
            "small reader names what each frame shows (the shape, its colour and the background's, how many there "
            "are, where their centre stands, how large and how turned they are) and a small transformer trained on "
            "those words scores each candidate by how likely its words are after the frames', a place, size or "
            "turn counting to within a level, and writes the next frame's words, drawn as a plain frame where the "
            "frames show one object (Play's *What the model sees* then shows each frame as it was read). It "
            "answers only when the reader is sure of at least half the pictures; anything else goes through the "
            "visual sentence.",
            elem_id="about-sequence-path",
        )
        gr.Markdown(
            "Analogies are ranked by two voices when the bundle carries an *analogy path* (the shipped one does): "
            "the visual sentence's, and a small network that maps the change between two pictures (before, after) "
            "to a direction and asks how close each candidate's change from the query lies to the examples' "
            "changes. The two rankings are multiplied, the second at a weight measured on held-out analogies; "
            "flips, turns and blurs, which the sentence's patch codes lose, are where it helps most. Solve's "
            "drawn answers still come from the visual sentence.",
            elem_id="about-analogy-path",
        )
    with gr.Accordion("Every evaluation measure", open=False, elem_id="about-evaluation-accordion"):
        evaluation = gr.Markdown(elem_id="about-evaluation")
    with gr.Accordion("Model card: training, curves, failures, how to reproduce", open=False,
                      elem_id="about-card-accordion"):
        card = gr.Markdown(elem_id="about-card")
    return overview, card, evaluation
