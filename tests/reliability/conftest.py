"""Prints the reliability figures (cases, requests, errors, lost writes) after the test run."""
from __future__ import annotations

from typing import Any

from tests.reliability.figures import FIGURES, summary_line


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if any(FIGURES.values()):
        terminalreporter.write_line(summary_line())
