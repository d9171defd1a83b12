"""Refusals: what a person is told when an input cannot be used (a bad value, a missing puzzle, a full queue).

Gradio prints the whole traceback of every `gr.Error` it shows; a refusal is expected, not a fault, so it is shown
the same way (a toast with the message) and logged in one line.
"""
from __future__ import annotations

import logging
from typing import Any

import gradio as gr

log = logging.getLogger(__name__)


class Refusal(gr.Error):
    """A gr.Error for a person's input: its message in a toast, one log line, no traceback."""

    def __init__(self, message: str, **options: Any) -> None:
        super().__init__(message, print_exception=False, **options)
        log.info("refused: %s", message[:300])
