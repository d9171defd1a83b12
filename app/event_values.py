"""What each input of an event may carry on the wire, checked by the gate before Gradio reads it.

A widget sends a number for a slider, true or false for a checkbox, a file reference for an image; a program
can send anything. Gradio refuses a wrong kind with a bare "Error" (or a handler fails on NaN), so the gate
names the input and what it takes instead: one rule per kind of component, for every event.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import gradio as gr

MAX_TEXT = 10_000  # characters in one text value: an ARC grid's JSON is under 6,000, a title or tag far less


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_file(value: Any) -> bool:
    """A file reference as Gradio's FileData needs it: a path (from /gradio_api/upload), a url beside it or not."""
    return isinstance(value, dict) and isinstance(value.get("path"), str)


def _is_gallery_item(value: Any) -> bool:
    """A gallery item: {"image": file, "caption": ...} as Gradio sends it, a bare file, or [file, caption]."""
    if isinstance(value, dict) and "image" in value:
        return _is_file(value["image"])
    if isinstance(value, list) and value:
        return _is_file(value[0])
    return _is_file(value)


def expected_kind(block: Any, value: Any) -> str | None:
    """None when `value` is what `block` takes on the wire, else what it takes, in words. None is fine but for a
    slider (a browser sends a cleared slider as its minimum); a number out of range is the handler's to name."""
    if isinstance(block, gr.Slider):
        return None if _is_number(value) else "a finite number"
    if value is None or isinstance(block, gr.State | gr.BrowserState):
        return None
    if isinstance(block, gr.Number):
        return None if _is_number(value) else "a finite number"
    if isinstance(block, gr.Checkbox):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"text of at most {MAX_TEXT:,} characters"
    if isinstance(block, gr.Textbox | gr.Markdown | gr.HTML):
        return None if isinstance(value, str) else "text"
    if isinstance(block, gr.Radio | gr.Dropdown) and not getattr(block, "multiselect", False):
        return None if isinstance(value, str) or _is_number(value) else "one choice (text)"
    if isinstance(block, gr.Image):
        return None if _is_file(value) else "a file reference ({\"path\": ...} from /gradio_api/upload)"
    if isinstance(block, gr.Gallery):
        ok = isinstance(value, list) and all(_is_gallery_item(item) for item in value)
        return None if ok else "a list of file references"
    if isinstance(block, gr.File):
        if block.file_count == "single":
            return None if _is_file(value) else "a file reference"
        return None if isinstance(value, list) and all(map(_is_file, value)) else "a list of file references"
    return None


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int | float):
        return f"the number {value:g}" if math.isfinite(value) else f"{value}"
    if isinstance(value, str):
        return f"text of {len(value):,} characters" if len(value) > MAX_TEXT else "text"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def refusal(fn: Any, data: list[Any]) -> str | None:
    """Why an event's data cannot be what its inputs take, in words naming the input; None when it can."""
    if len(data) != len(fn.inputs):
        return f"{fn.api_name or 'this event'} takes {len(fn.inputs)} values, got {len(data)}"
    for position, (block, value) in enumerate(zip(fn.inputs, data, strict=True)):
        wanted = expected_kind(block, value)
        if wanted is not None:
            name = getattr(block, "label", None) or getattr(block, "elem_id", None) or type(block).__name__
            return (f"input {position + 1} ({name}) of {fn.api_name or 'this event'} takes {wanted}, "
                    f"got {_kind_of(value)}")
    return None


def named_data(fn: Any, body: dict[str, Any]) -> tuple[list[Any] | None, str | None]:
    """A call/v2 body (values by the handler's parameter names) as the event's data in input order, or why it
    cannot be (a name the handler lacks); (None, None) when the handler's names cannot be matched to inputs."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = [p for p in inspect.signature(fn.fn).parameters.values() if p.kind in positional][:len(fn.inputs)]
    if len(parameters) != len(fn.inputs):
        return None, None
    names = [p.name for p in parameters]
    unknown = sorted(set(body) - set(names) - {"oauth_token"})
    if unknown:
        return None, f"{fn.api_name} takes {', '.join(names)}; not {', '.join(map(repr, unknown))}"
    missing = [p.name for p in parameters if p.name not in body and p.default is inspect.Parameter.empty]
    if missing:
        return None, f"{fn.api_name} needs {', '.join(missing)}"
    return [body.get(name) for name in names], None
